# vitssl — every target creates .venv (python3 -m venv + pip) on first use, so each works on a fresh clone.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_FLAGS ?=
PEER_VENV := benchmarks/.peer-venv
BENCH_FLAGS ?=

.PHONY: help install demo test test-fast demo-esvit demo-sit lint typecheck format bench bench-quick bench-throughput bench-gpu bench-gpu-dry \
	bench-distributed bench-options bench-learn bench-loader clean docs

help:
	@echo "make demo       pretrain DINO on the built-in synthetic data, evaluate, write pictures and a report (runs/demo)"
	@echo "make demo-esvit EsViT on the same data, with region correspondences in its report (runs/esvit_demo)"
	@echo "make demo-sit   SiT on the same data, with its reconstructions in its report (runs/sit_demo)"
	@echo "make test       the whole test suite (learning tests included; CIFAR-10 tests need VITSSL_TEST_DATA)"
	@echo "make test-fast  the suite without the slow learning tests"
	@echo "make lint       ruff check + format check"
	@echo "make docs      the documentation site with MkDocs (--strict: a broken reference fails), into site/"
	@echo "make typecheck  mypy src (strict for losses, methods and engine; settings in pyproject.toml)"
	@echo "make bench      vitssl vs lightly's DINO on the fixed workload + every CIFAR-10 preset (over an hour;"
	@echo "                writes benchmarks/results/bench.md, bench.json, summary.json; docs/benchmarks.md)"
	@echo "make bench-quick  the same as a smoke run (1 round, 2 steps; writes benchmarks/results/quick/)"
	@echo "make bench-throughput  one preset: model step, end to end, loader alone (benchmarks/throughput.py)"
	@echo "make bench-gpu  on a GPU machine: ViT-S/16 multi-crop bf16 eager + compiled, DDP smoke (benchmarks/gpu.sh)"
	@echo "make bench-gpu-dry  the GPU script's code paths on CPU at toy sizes"
	@echo "make bench-distributed  1 process x 2 threads against 2 processes x 1 thread (torchrun, gloo)"
	@echo "make bench-options  attention kernel, activation checkpointing, torch.compile: before/after (fixed workload)"
	@echo "make bench-loader the data loader alone at 0, 1 and 2 workers against the model step (fixed workload)"
	@echo "make bench-learn  20-NN vs minutes for each method's CIFAR-10 preset, init and raw pixels (BUDGETS=\"15 60\";"
	@echo "                needs VITSSL_TEST_DATA; hours for all methods: METHODS=dino for one)"

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

DOCS_STAMP := $(VENV)/.docs-installed
$(DOCS_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[docs]"
	touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

demo: $(STAMP)
	$(BIN)/vitssl pretrain configs/demo.yaml
	$(BIN)/vitssl knn runs/demo --k 10 20 --compare-init
	$(BIN)/vitssl attention runs/demo synthetic --score --compare-init
	$(BIN)/vitssl pca runs/demo synthetic
	$(BIN)/vitssl report runs/demo
	@echo "pictures: runs/demo/curves.png runs/demo/knn_comparison.png runs/demo/attention/ runs/demo/pca.png; report: runs/demo/report/index.html"

demo-esvit: $(STAMP)
	$(BIN)/vitssl pretrain configs/esvit/demo.yaml
	$(BIN)/vitssl knn runs/esvit_demo --k 20 --compare-init
	$(BIN)/vitssl correspond runs/esvit_demo synthetic
	$(BIN)/vitssl correspond runs/esvit_demo --score synthetic --compare-init
	$(BIN)/vitssl report runs/esvit_demo
	@echo "report: runs/esvit_demo/report/index.html"

demo-sit: $(STAMP)
	$(BIN)/vitssl pretrain configs/sit/demo.yaml
	$(BIN)/vitssl knn runs/sit_demo --k 20 --compare-init
	$(BIN)/vitssl report runs/sit_demo
	@echo "report (with the reconstructions drawn during training): runs/sit_demo/report/index.html"

# pytest exits with 5 when it collected no test: that is a failure here, not a pass.
test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_FLAGS) || { rc=$$?; [ $$rc -eq 5 ] && echo "pytest collected no tests" >&2; exit $$rc; }

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_FLAGS) || { rc=$$?; [ $$rc -eq 5 ] && echo "pytest collected no tests" >&2; exit $$rc; }

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy src

format: $(STAMP)
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

# The peer (lightly) gets its own venv on top of this one's torch; if it cannot be installed, the results say why.
bench: $(STAMP)
	$(BIN)/python benchmarks/peer_env.py --venv $(PEER_VENV)
	$(BIN)/python benchmarks/bench.py --peer-python $(PEER_VENV)/bin/python $(BENCH_FLAGS)

bench-quick:
	$(MAKE) bench BENCH_FLAGS="--quick $(BENCH_FLAGS)"

bench-throughput: $(STAMP)
	$(BIN)/python benchmarks/throughput.py

bench-gpu: $(STAMP)
	PYTHON=$(BIN)/python bash benchmarks/gpu.sh

bench-gpu-dry: $(STAMP)
	PYTHON=$(BIN)/python bash benchmarks/gpu.sh --dry-run

bench-distributed: $(STAMP)
	PATH=$(BIN):$$PATH $(BIN)/python benchmarks/distributed.py

bench-options: $(STAMP)
	$(BIN)/python benchmarks/options.py $(BENCH_FLAGS)

BUDGETS ?= 15 60
METHODS ?= dino_mini_15min esvit_mini_15min esvit_swin_15min sit_mini_15min sit_masked_mini_15min dino esvit_vit esvit_swin sit sit_masked
bench-loader: $(STAMP)
	$(BIN)/python benchmarks/loader.py $(BENCH_FLAGS)

bench-learn: $(STAMP)
	$(BIN)/python benchmarks/learn.py --budgets $(BUDGETS) --methods $(METHODS) $(BENCH_FLAGS)

clean:
	rm -rf $(VENV) $(PEER_VENV) runs .pytest_cache .ruff_cache
