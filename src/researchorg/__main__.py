from researchorg.cli import main

main()
