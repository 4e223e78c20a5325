from psl.cli import run

run()
