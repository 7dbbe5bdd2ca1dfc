"""The job runtime: workers that claim jobs from the catalog's queue and run them, in
this process or in their own OS processes (`ensui worker`), and executors that send
jobs elsewhere (Slurm through submitit)."""
