VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip

.PHONY: install data-fashion results-fashion train-fashion test test-slow demo bench bench-tasks results-dna train-dna clean \
	results-molecules train-molecules train-rna results-rna results-search

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	# torch first: 2.13.0 is a CPU wheel on these machines; the package's own range accepts it
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -e '.[test]'
	# DNA task data (ENCODE DHS sequences): only its data file is read; the package pins an old torch, so no deps
	$(PIP) install --quiet --no-deps dnadiffusion==0.0.0.dev0
	# molecule tasks: MOSES SMILES (only its data files are read) and dockstring's prepared receptors (only its
	# PDBQT and box files; its bundled binary is never run); both pin old dependencies, so no deps
	$(PIP) install --quiet --no-deps molsets==0.3.1 dockstring==0.3.4
	touch $@

install: $(VENV)/.installed

# Fashion-MNIST comes from Debian's dataset-fashion-mnist, read in place (never copied into the repository)
FASHION := /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz
$(FASHION):
	(apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) || sudo sh -c 'apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist'

data-fashion: $(FASHION)

test: install data-fashion
	$(PY) -m pytest -q

# exit code 5 is pytest's "no tests collected": not a failure when no check is marked slow
test-slow: install
	$(PY) -m pytest -q -m slow; rc=$$?; if [ $$rc -eq 5 ]; then echo "no slow tests"; exit 0; fi; exit $$rc

demo: install
	$(VENV)/bin/svdd compare --task dna-enhancer --quick --resume results/demo

# results targets resume their comparison (finished runs are reused); after retraining a network the settings differ:
# start again with `svdd compare ... --overwrite` (rewards cached on disk, e.g. docking, are still reused)
# the committed DNA results (about 45 minutes on 2 CPU cores; the full default of 256 samples takes about 4x)
results-dna: install
	$(VENV)/bin/svdd compare --task dna-enhancer --seeds 0,1,2 --num-samples 64 --resume results/dna-enhancer
	$(VENV)/bin/svdd frontier --task dna-enhancer --num-samples 32 --Ms 1,2,5,10,20,40 --resume results/dna-enhancer/frontier

# every method at equal network-row budgets, DNA and Fashion-MNIST compressibility (as committed: the two ran side by
# side on 2 CPU cores: DNA 56 minutes, Fashion-MNIST 46)
results-search: install data-fashion
	$(VENV)/bin/svdd frontier --task dna-enhancer --budgets 256,512,1024 --budget-kind network_calls --seeds 0,1,2 \
	  --num-samples 32 --resume results/dna-enhancer/search
	$(VENV)/bin/svdd frontier --task fashion-compress --budgets 100,200,400 --budget-kind network_calls --seeds 0,1,2 \
	  --num-samples 16 --resume results/fashion-compress/search

# retrain the shipped DNA networks from scratch (about an hour on 2 CPU cores)
train-dna: install
	$(PY) -m svdd.tasks.dna.train denoiser --minutes 45
	$(PY) -m svdd.tasks.dna.train oracles --epochs 8
	$(PY) -m svdd.tasks.dna.train value --rollouts 1024 --keep-every 4 --epochs 6 --threads 1

# the committed image results: DEVICE=cuda on a GPU (as committed: one H200, a few minutes); on 2 CPU cores use
# FASHION_N=16 or expect hours
DEVICE ?= cpu
FASHION_N ?= 64
results-fashion: install data-fashion
	for t in compress class; do \
	  $(VENV)/bin/svdd compare --task fashion-$$t --seeds 0,1,2 --num-samples $(FASHION_N) --device $(DEVICE) --resume results/fashion-$$t && \
	  $(VENV)/bin/svdd frontier --task fashion-$$t --num-samples $(FASHION_N) --Ms 1,2,5,10,20,40 --device $(DEVICE) --resume results/fashion-$$t/frontier || exit 1; \
	done

# retrain the shipped Fashion-MNIST networks (the DDPM as shipped: 6.6 minutes on one H200; on CPU expect far fewer steps)
train-fashion: install data-fashion
	$(PY) -m svdd.tasks.fashion.train ddpm --minutes 6.6 --batch 512 --device $(DEVICE)
	$(PY) -m svdd.tasks.fashion.train classifiers --epochs 4
	$(PY) -m svdd.tasks.fashion.train value

# SVDD-PM on the shipped DNA networks against the official call pattern (about 45 minutes on 2 CPU cores); the GPU
# tables in results/bench/ came from: python benchmarks/bench_dna.py --device cuda -N 256 --repeats 2 --variants
# official,svdd,nodedupe,bf16 --memory 64,256,1024 --out results/bench/h100 (then --variants '' --trace FILE.md
# --trace-variants svdd for the profiler summary; each command's line is in its .json); on a GPU machine
# `sh benchmarks/gpu.sh` runs the current GPU comparison in one call
bench: install
	$(PY) benchmarks/bench_dna.py --variants official,official-heap,svdd,fixed,bf16 --repeats 3 --memory 64,256,1024 \
	  --profile --out results/bench/cpu

# the same comparison on the other shipped tasks' models and guidance rewards (about 25 minutes on 2 CPU cores)
bench-tasks: install
	$(PY) benchmarks/bench_dna.py --task rna-utr-mrl -N 128 --variants official,official-heap,svdd,svdd-noheap,fixed --repeats 3 \
	  --out results/bench/cpu-task-rna-utr-mrl
	$(PY) benchmarks/bench_dna.py --task molecule-qed -N 32 --variants official,official-heap,svdd,svdd-noheap --repeats 3 \
	  --out results/bench/cpu-task-molecule-qed
	$(PY) benchmarks/bench_dna.py --task fashion-compress -N 16 --variants official,official-heap,svdd,fixed --repeats 3 \
	  --out results/bench/cpu-task-fashion-compress
	$(PY) benchmarks/bench_dna.py --task toy-gmm -N 20000 --variants official,official-heap,svdd,mb1024 --repeats 5 \
	  --out results/bench/cpu-task-toy-gmm

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache

# retrain the shipped molecule networks (docking value net: about 15 minutes of docking); DOCKING_CACHE keeps every
# docking result, so a rerun docks nothing twice. The shipped denoiser was trained on one H100 in 3.3 minutes
# (MOL_DENOISER as below with DEVICE=cuda; the GPU machine needs only numpy and torch: copy the token files written
# by `python -m svdd.tasks.molecule.train export-tokens --out .carry/moses` and pass --tokens .carry/moses); on
# 2 CPU cores the default below gives a weaker model (validation NELBO 47.6 against 32.5)
DOCKING_CACHE ?= $(HOME)/.cache/svdd/docking.sqlite
ifeq ($(DEVICE),cuda)
MOL_DENOISER ?= --device cuda --amp --layers 5 --minutes 3.3 --batch 1024 --eval-every 2000
else
MOL_DENOISER ?= --minutes 40 --layers 5 --batch 128
endif
train-molecules: install
	$(PY) -m svdd.tasks.molecule.train denoiser $(MOL_DENOISER)
	$(PY) -m svdd.tasks.molecule.train value --reward qed --rollouts 2048 --real 20000
	$(PY) -m svdd.tasks.molecule.train value --reward sa --rollouts 1024 --real 10000
	$(PY) -m svdd.tasks.molecule.train value --reward docking --steps 32 --rollouts 256 --real 128 --epochs 6 \
	  --docking-cache $(DOCKING_CACHE)
	$(PY) -m svdd.tasks.molecule.train quality --n 500 --steps 32 64

# the committed molecule results (2 CPU cores: docking about an hour; QED and SA a few minutes each); the docking
# comparison as committed leaves SVDD-R out (time), add it with --methods ...,svdd-r
results-molecules: install
	$(PY) benchmarks/molecule_docking.py throughput --molecules 16
	$(VENV)/bin/svdd compare --task molecule-docking-parp1 --seeds 0,1,2 --num-samples 8 \
	  --task-option cache=$(DOCKING_CACHE) --methods pretrained,best-of-n,dps,smc,svdd-mc,svdd-pm \
	  --resume results/molecule-docking-parp1
	$(PY) benchmarks/molecule_docking.py frontier --num-samples 8 --cache $(DOCKING_CACHE) --bon 2 5 10 20 --every 8 --budgets --no-plain
	for r in qed sa; do \
	  $(VENV)/bin/svdd compare --task molecule-$$r --seeds 0,1,2 --num-samples 16 --resume results/molecule-$$r || exit 1; \
	done
	$(PY) benchmarks/molecule_docking.py redock --compare results/molecule-docking-parp1 --cache $(DOCKING_CACHE)

# the SYNTHETIC RNA 5'UTR task, built only with the folder-task commands a user runs on their own data: a random N50
# library labelled by two MRL proxies (svdd.tasks.rna_utr.proxy; not measurements), a prior, a guidance oracle on
# proxy A, a held-out evaluation oracle on proxy B (another split and seed), a value net
RNA_DATA ?= $(HOME)/.cache/svdd/rna-utr
RNA_WEIGHTS := src/svdd/tasks/rna_utr/weights
train-rna: install
	$(PY) -m svdd.tasks.rna_utr.data --out $(RNA_DATA) --num 20000 --seed 0
	$(VENV)/bin/svdd train prior --fasta $(RNA_DATA)/library.fasta --alphabet ACGU --minutes 10 --num-steps 50 \
	  --out $(RNA_WEIGHTS)/prior --overwrite --quiet
	$(VENV)/bin/svdd train oracle --csv $(RNA_DATA)/library.csv --sequence-column sequence --target mrl_a \
	  --prior $(RNA_WEIGHTS)/prior --split-column split --seed 0 --epochs 30 --out $(RNA_WEIGHTS)/oracle-guidance --overwrite --quiet
	$(VENV)/bin/svdd train oracle --csv $(RNA_DATA)/library.csv --sequence-column sequence --target mrl_b \
	  --prior $(RNA_WEIGHTS)/prior --heldout 0.1 --seed 1 --epochs 30 --out $(RNA_WEIGHTS)/oracle-evaluation --overwrite --quiet
	$(VENV)/bin/svdd train value --prior $(RNA_WEIGHTS)/prior --oracle $(RNA_WEIGHTS)/oracle-guidance --rollouts 2048 \
	  --epochs 20 --out $(RNA_WEIGHTS)/value --overwrite --quiet

results-rna: install
	$(VENV)/bin/svdd compare --task rna-utr-mrl --seeds 0,1,2 --num-samples 128 --resume results/rna-utr-mrl --quiet
	$(VENV)/bin/svdd frontier --task rna-utr-mrl --num-samples 64 --Ms 1,2,5,10,20 --resume results/rna-utr-mrl/frontier --quiet
