from babelscope.cli import main

main()
