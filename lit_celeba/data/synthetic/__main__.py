from lit_celeba.data.synthetic.command import main

raise SystemExit(main())
