from psl.cli import app

app(prog_name="psl")
