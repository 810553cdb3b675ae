from lit_celeba.data.synthetic import main

raise SystemExit(main())
