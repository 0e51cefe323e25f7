from distill_lora.cli import main

main()
