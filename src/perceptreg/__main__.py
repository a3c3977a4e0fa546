from perceptreg.cli import run

run()
