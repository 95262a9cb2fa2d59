from foscu_bench.cli import main

main()
