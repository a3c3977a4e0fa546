from perceptreg.cli import main

main()
