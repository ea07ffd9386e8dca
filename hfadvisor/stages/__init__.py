"""The stages of one round. Each module pairs a prompt builder with the parser of its answer.

weakness → generate (batch) → summarize, plus `selfinstruct` for the baseline and
`validate` for the checks every generated query goes through.
"""
