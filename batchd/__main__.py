from batchd.cli import main

main()
