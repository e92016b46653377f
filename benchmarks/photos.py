"""The photo benchmark (issue 9): validation photos, scikit-image's photos and the generated structure set.

    python -m benchmarks.photos                         # every image and scenario (~10 minutes on 2 CPU cores)
    python -m benchmarks.photos --quick                 # a smoke run in about a minute
    python -m benchmarks.photos --previous-rev HEAD~3   # also the default model of an earlier commit

All the work is in `denoiser.photo_benchmark`; `--help` lists every option.
"""

from denoiser.photo_benchmark import main

if __name__ == "__main__":
    main()
