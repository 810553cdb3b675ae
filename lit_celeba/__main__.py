from lit_celeba.cli import cli_main

cli_main()
