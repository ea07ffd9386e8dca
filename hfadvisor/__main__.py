from hfadvisor.cli import main

main()
