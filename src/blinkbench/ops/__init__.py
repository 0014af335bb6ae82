"""Operations around the pipeline (not pipeline steps): the local object store used as the
DVC remote, and recording a Snakemake run into DVC."""
