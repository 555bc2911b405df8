"""``python -m experiments.activation_study``."""

from experiments.activation_study import main

if __name__ == "__main__":
    main()
