from tidings.server.cli import main

main()
