"""``python -m diffusion_edu train ...`` / ``python -m diffusion_edu sample ...``: see cli.py."""

from diffusion_edu.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
