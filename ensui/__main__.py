from ensui.cli import main

main()
