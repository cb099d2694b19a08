from hfuv.cli import main

main()
