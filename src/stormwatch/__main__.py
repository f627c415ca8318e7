from stormwatch.cli.main import main

main()
