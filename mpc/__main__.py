from mpc.cli.app import main

main()
