# dml: deep metric learning in C11.
#   make            static + shared library and the dml CLI (objects under build/)
#   make test       build and run every tests/test_*.c (cmocka), then make fuzz-replay, then
#                   make python-test
#   make python-test  the Python package's pytest tests (python/tests) over build/libdml.so, and
#                   the bench's (bench/test_*.py)
#   make test-kernels  the float-sensitive tests under each OpenBLAS kernel the CPU runs
#   make sanitize   the same tests under ASan + UBSan (objects under build-san/)
#   make tsan       the C API encoding from 8 threads under ThreadSanitizer (build-tsan/)
#   make fuzz       libFuzzer harnesses tests/fuzz/fuzz_*.c, with clang (build-fuzz/)
#   make fuzz-replay  every harness over its corpus tests/fuzz/corpus/<name>/ (part of make test)
#   make fuzz-run FUZZ=config FUZZ_TIME=3600   fuzz one harness (docs/testing.md)
#   make demo       train and evaluate configs/demo.yaml (the README's first command)
#   make bench      dml against PyTorch and FAISS, side by side, and the Python API against C (bench/)
#   make parity     dml's defaults against PyTorch's on small data sets (bench/parity.py)
#   make losses     each loss's shipped config against its PyTorch recipe on Fashion-MNIST (bench/losses.py)
#   make cluster    the trainer's traffic on a cluster of network namespaces (bench/cluster.py; root)
#   make deps       install the Debian packages the build, tests and benchmarks need
#   make install    PREFIX=/usr/local DESTDIR=
VERSION_MAJOR := 0
VERSION_MINOR := 1
VERSION_PATCH := 0
VERSION := $(VERSION_MAJOR).$(VERSION_MINOR).$(VERSION_PATCH)

CC ?= cc
PREFIX ?= /usr/local
BUILD ?= build
OPT ?= -O3
PYTHON ?= /usr/bin/python3

# Looked up on first use, not when the Makefile is read: `make deps demo` installs libhdf5-dev
# in its first goal, and the flags must be asked for after that (each is then kept).
HDF5_CFLAGS = $(eval HDF5_CFLAGS := $(shell pkg-config --cflags hdf5 2>/dev/null))$(HDF5_CFLAGS)
HDF5_LIBS = $(eval HDF5_LIBS := $(shell pkg-config --libs hdf5 2>/dev/null || echo -lhdf5))$(HDF5_LIBS)

# MPI (OpenMPI's C binding) for the dml binary only: cli/mpi.c; libdml links no MPI.
MPI_CFLAGS = $(eval MPI_CFLAGS := $(shell pkg-config --cflags ompi-c 2>/dev/null))$(MPI_CFLAGS)
MPI_LIBS = $(eval MPI_LIBS := $(shell pkg-config --libs ompi-c 2>/dev/null || echo -lmpi))$(MPI_LIBS)

CPPFLAGS += -I. -Iinclude $(HDF5_CFLAGS) -D_XOPEN_SOURCE=700 \
            -DDML_VERSION_STRING='"$(VERSION)"'
CFLAGS += -std=c11 $(OPT) -fno-math-errno -Wall -Wextra -Werror -MMD -MP -fPIC -fvisibility=hidden
LIBS = $(HDF5_LIBS) -lopenblas -lyaml -lz -lm -lpthread

LIB_DIRS := data nn losses optim eval serve train
LIB_SRC := $(foreach d,$(LIB_DIRS),$(wildcard $(d)/*.c))
CLI_SRC := $(wildcard cli/*.c)
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o)
CLI_OBJ := $(CLI_SRC:%.c=$(BUILD)/%.o)
TEST_SRC := $(wildcard tests/test_*.c)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
TEST_UTIL_OBJ := $(BUILD)/tests/testutil.o

.PHONY: all test python-test test-kernels unit-test sanitize tsan fuzz fuzz-bins fuzz-replay fuzz-run \
        bench bench-onednn parity losses cluster deps demo install uninstall clean valgrind
# Keep test objects: they are intermediate files make would otherwise delete after every link.
.SECONDARY:
all: $(BUILD)/libdml.a $(BUILD)/libdml.so $(BUILD)/dml

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

$(BUILD)/cli/mpi.o: CPPFLAGS += $(MPI_CFLAGS)

$(BUILD)/libdml.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/libdml.so: $(LIB_OBJ)
	$(CC) -shared -Wl,-soname,libdml.so.$(VERSION_MAJOR) $(LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/dml: $(CLI_OBJ) $(BUILD)/libdml.a
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(CLI_OBJ) $(BUILD)/libdml.a $(LIBS) $(MPI_LIBS)

# Tests may need extra link flags: LDFLAGS_test_<name> (e.g. --wrap=malloc to count allocations).
$(BUILD)/tests/%: $(BUILD)/tests/%.o $(TEST_UTIL_OBJ) $(BUILD)/libdml.a
	$(CC) $(CFLAGS) $(LDFLAGS) $(LDFLAGS_$*) -o $@ $< $(TEST_UTIL_OBJ) $(BUILD)/libdml.a $(LIBS) -lcmocka

WRAP_ALLOC := -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=posix_memalign,--wrap=aligned_alloc
LDFLAGS_test_nn_arena := $(WRAP_ALLOC)
LDFLAGS_test_api_oom := $(WRAP_ALLOC)
LDFLAGS_test_data_readers := -Wl,--wrap=malloc,--wrap=realloc

# The I/O fault injector the tests preload into the CLI (tests/fault_preload.c).
FAULT_LIB := $(BUILD)/tests/libfault.so
$(FAULT_LIB): tests/fault_preload.c
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -O1 -Wall -Wextra -Werror -fPIC -shared $< -o $@ -ldl

# The fuzz corpora as regression inputs (from the top-level make only: make sanitize's inner
# make test would replay them a second time), then the cmocka tests, whose count closes the run.
# Then, from the top-level make only (make sanitize's build-san library cannot be loaded into
# an uninstrumented Python), the Python package's tests, whose pytest summary closes the run.
ifeq ($(MAKELEVEL),0)
test: fuzz-replay
endif
test: unit-test
ifeq ($(MAKELEVEL),0)
	@$(MAKE) --no-print-directory python-test
endif

# pytest over python/tests (docs/python.md) and bench/test_*.py (the bench's own logic); -rs
# names the reason of every skipped test.
python-test: all
	@PYTHONPATH=python DML_LIB=$(BUILD)/libdml.so DML=$(BUILD)/dml \
	    $(PYTHON) -m pytest -q -rs -p no:cacheprovider python/tests $(wildcard bench/test_*.py)

unit-test: all $(TEST_BIN) $(FAULT_LIB) $(BUILD)/bench_scale
	@DML=$(BUILD)/dml PYTHON=$(PYTHON) sh tests/run.sh $(TEST_BIN)

SAN_FLAGS := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
sanitize:
	$(MAKE) BUILD=build-san OPT="$(SAN_FLAGS)" LDFLAGS="-fsanitize=address,undefined" test

# ThreadSanitizer (gcc's) over the library, the API's threads test and dml's own threads (the
# pool: products, Adam and the norm on 1-3 threads); any report fails it.
TSAN_FLAGS := -O1 -g -fno-omit-frame-pointer -fsanitize=thread
TSAN_TESTS := build-tsan/tests/test_api_threads build-tsan/tests/test_nn_pool
tsan:
	$(MAKE) BUILD=build-tsan CC=gcc OPT="$(TSAN_FLAGS)" LDFLAGS=-fsanitize=thread $(TSAN_TESTS)
	TSAN_OPTIONS="halt_on_error=1 exitcode=66" sh tests/run.sh $(TSAN_TESTS)

# libFuzzer harnesses: every tests/fuzz/fuzz_<name>.c becomes build-fuzz/fuzz_<name>, built with
# clang over the library compiled the same way; its corpus is tests/fuzz/corpus/<name>/.
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_NAMES := $(FUZZ_SRC:tests/fuzz/fuzz_%.c=%)
FUZZ_FLAGS := -O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer-no-link,address,undefined \
              -fno-sanitize-recover=undefined
FUZZ_LINK := -fsanitize=fuzzer,address,undefined
FUZZ_TIME ?= 600
# An input that takes 2 GB (libFuzzer's default limit, also its limit on one malloc) or 10 s
# is a finding: every seed is a few KB.
FUZZ_ARGS ?= -rss_limit_mb=2048 -timeout=10
fuzz:
	$(MAKE) BUILD=build-fuzz CC=clang OPT="$(FUZZ_FLAGS)" LDFLAGS= fuzz-bins

fuzz-bins: $(FUZZ_NAMES:%=$(BUILD)/fuzz_%)

$(BUILD)/fuzz_%: $(BUILD)/tests/fuzz/fuzz_%.o $(BUILD)/tests/fuzz/fuzzutil.o $(BUILD)/libdml.a
	$(CC) $(CFLAGS) $(FUZZ_LINK) -o $@ $^ $(LIBS)

# Runs each harness once over every file of its corpus (libFuzzer runs the files given, then exits).
fuzz-replay: fuzz
	@set -e; for n in $(FUZZ_NAMES); do \
	    files=$$(find tests/fuzz/corpus/$$n -type f 2>/dev/null); \
	    if [ -z "$$files" ]; then echo "fuzz-replay: $$n: no corpus"; exit 1; fi; \
	    build-fuzz/fuzz_$$n $(FUZZ_ARGS) $$files > build-fuzz/replay_$$n.log 2>&1 \
	        || { cat build-fuzz/replay_$$n.log; echo "fuzz-replay: $$n FAILED"; exit 1; }; \
	    echo "fuzz-replay: $$n: $$(echo $$files | wc -w) inputs passed"; \
	done

# Fuzzes one harness for FUZZ_TIME seconds on one core; new inputs go to build-fuzz/corpus-<name>
# (the shipped corpus is read, not written) and crashes to build-fuzz/crash-*.
fuzz-run: fuzz
	@test -n "$(FUZZ)" || { echo "usage: make fuzz-run FUZZ=<name> [FUZZ_TIME=seconds]"; exit 2; }
	@mkdir -p build-fuzz/corpus-$(FUZZ)
	build-fuzz/fuzz_$(FUZZ) $(FUZZ_ARGS) -max_total_time=$(FUZZ_TIME) -print_final_stats=1 \
	    -artifact_prefix=build-fuzz/ build-fuzz/corpus-$(FUZZ) tests/fuzz/corpus/$(FUZZ)

# The float-sensitive tests (those comparing two summation orders, and the PyTorch and FAISS
# cross-checks) under each OpenBLAS kernel the CPU can run, with a table of the measured
# differences per kernel (docs/testing.md). Not part of make test.
KERNEL_TESTS := test_mpi test_train test_train_head test_train_stream test_encode_stream \
    test_eval_stream test_eval_search test_eval_ann test_losses_torch test_nn_pq test_nn_kmeans \
    test_api_threads
test-kernels: all $(KERNEL_TESTS:%=$(BUILD)/tests/%) $(BUILD)/tests/openblas_core $(FAULT_LIB) \
    $(BUILD)/bench_scale
	@DML=$(BUILD)/dml PYTHON=$(PYTHON) sh tests/scripts/test_kernels.sh $(BUILD) \
	    $(KERNEL_TESTS:%=$(BUILD)/tests/%)

$(BUILD)/tests/openblas_core: tests/scripts/openblas_core.c
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -O1 -Wall -Wextra -Werror $< -o $@ -lopenblas

valgrind: all $(TEST_BIN) $(FAULT_LIB)
	@VALGRIND=1 DML=$(BUILD)/dml PYTHON=$(PYTHON) sh tests/run.sh $(TEST_BIN)

# The main job: train and evaluate the demo config on Fashion-MNIST (from a Debian package).
demo: all
	$(BUILD)/dml train configs/demo.yaml

bench: all $(BUILD)/bench_dml $(BUILD)/bench_scale $(BUILD)/bench_encode
	$(PYTHON) bench/run.py --dml $(BUILD)/dml --bench $(BUILD)/bench_dml $(BENCH_ARGS)
	$(PYTHON) bench/scale.py --bench $(BUILD)/bench_scale
	$(PYTHON) bench/database.py --dml $(BUILD)/dml $(DATABASE_ARGS)
	$(PYTHON) bench/python_api.py --dml $(BUILD)/dml --encode $(BUILD)/bench_encode \
	    --lib $(BUILD)/libdml.so $(PYTHON_API_ARGS)

# Retrieval quality, not time: the same recipe in dml and PyTorch, each with its own defaults
# (docs/parity.md). PARITY_ARGS=--quick for a smoke run; not part of `make test`.
parity: all $(BUILD)/bench_dml
	$(PYTHON) bench/parity.py --dml $(BUILD)/dml --bench $(BUILD)/bench_dml $(PARITY_ARGS)

# Each loss's configs/fmnist-<loss>.yaml against the same recipe in PyTorch, 3 seeds, every label
# and 20 per class (docs/results.md). LOSSES_ARGS="--losses supcon --seeds 1" narrows it; runs
# go to runs/losses/, and a finished run there is read, not trained again.
losses: all
	$(PYTHON) bench/losses.py --dml $(BUILD)/dml $(LOSSES_ARGS)

# The bytes a rank sends per step and the communication time on 2, 4 and 8 nodes, each a network
# namespace with a tbf-limited link (bench/cluster.sh), against docs/scale.md's cost model.
# Needs root; not part of make test (tests/test_mpi.c runs its 2-rank smoke when it can).
# CLUSTER_ARGS="--rate 1gbit" or "--ranks 2 4" to change the run.
cluster: all $(BUILD)/bench_scale
	@if [ "$$(id -u)" -ne 0 ]; then echo "cluster: skipped: needs root (ip netns, tc)"; \
	else $(PYTHON) bench/cluster.py --bench $(BUILD)/bench_scale $(CLUSTER_ARGS); fi

# The bench program alone (for profiling one case: build/bench_dml train CONFIG ...).
$(BUILD)/bench_dml: $(wildcard bench/bench_*.c bench/*.h) $(BUILD)/libdml.a
	$(CC) $(CPPFLAGS) $(filter-out -MMD -MP,$(CFLAGS)) $(LDFLAGS) -Wl,--wrap=dml_gemm \
	    -o $@ $(wildcard bench/bench_*.c) $(BUILD)/libdml.a $(LIBS)

# The Python API's rows (bench/python_api.py): dml_model_encode through the public header alone.
$(BUILD)/bench_encode: bench/encode_api.c include/dml.h $(BUILD)/libdml.a
	$(CC) $(CPPFLAGS) $(filter-out -MMD -MP,$(CFLAGS)) $(LDFLAGS) -o $@ bench/encode_api.c \
	    $(BUILD)/libdml.a $(LIBS)

# The scaling row: the trainer's step under mpirun (bench/scale_mpi.c, bench/scale.py).
$(BUILD)/bench_scale: bench/scale_mpi.c $(BUILD)/cli/mpi.o $(BUILD)/libdml.a
	$(CC) $(CPPFLAGS) $(filter-out -MMD -MP,$(CFLAGS)) $(LDFLAGS) -o $@ bench/scale_mpi.c \
	    $(BUILD)/cli/mpi.o $(BUILD)/libdml.a $(LIBS) $(MPI_LIBS)

# Issue #30's question, outside make bench: dml's dense layers (OpenBLAS) against oneDNN's inner
# products at the bench's training shapes (bench/onednn_layers.c). Needs libdnnl-dev, which
# nothing else in dml does, so neither make deps nor CI installs it.
$(BUILD)/bench_onednn: bench/onednn_layers.c bench/bench_time.c bench/bench.h $(BUILD)/libdml.a
	@test -f /usr/include/dnnl.h || { echo "bench-onednn: needs oneDNN: apt-get install libdnnl-dev"; exit 2; }
	$(CC) $(CPPFLAGS) $(filter-out -MMD -MP,$(CFLAGS)) $(LDFLAGS) -o $@ bench/onednn_layers.c \
	    bench/bench_time.c $(BUILD)/libdml.a $(LIBS) -ldnnl

bench-onednn: $(BUILD)/bench_onednn
	$(PYTHON) bench/onednn_layers.py --bench $(BUILD)/bench_onednn $(ONEDNN_ARGS)

DEB_PACKAGES := build-essential pkg-config libopenblas-dev libhdf5-dev libyaml-dev libcmocka-dev \
    zlib1g-dev dataset-fashion-mnist valgrind python3-numpy python3-torch python3-faiss \
    python3-h5py python3-onnx python3-sklearn chromium time clang libopenmpi-dev openmpi-bin \
    python3-pytest python3-venv python3-pip python3-setuptools python3-wheel python3-hnswlib \
    python3-tqdm
deps:
	@missing=$$(for p in $(DEB_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null \
	    | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	    echo "installing:" $$missing; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	        --no-install-recommends $$missing; \
	else echo "deps: all packages installed"; fi

$(BUILD)/dml.pc: Makefile
	@mkdir -p $(BUILD)
	printf '%s\n' 'prefix=$(PREFIX)' 'libdir=$${prefix}/lib' 'includedir=$${prefix}/include' '' \
	    'Name: dml' 'Description: deep metric learning encoders and product quantizers' \
	    'Version: $(VERSION)' 'Libs: -L$${libdir} -ldml' \
	    'Libs.private: $(LIBS)' 'Cflags: -I$${includedir}' > $@

install: all $(BUILD)/dml.pc
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/include
	install -m 755 $(BUILD)/dml $(DESTDIR)$(PREFIX)/bin/dml
	install -m 644 $(BUILD)/libdml.a $(DESTDIR)$(PREFIX)/lib/libdml.a
	install -m 755 $(BUILD)/libdml.so $(DESTDIR)$(PREFIX)/lib/libdml.so.$(VERSION)
	ln -sf libdml.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/libdml.so.$(VERSION_MAJOR)
	ln -sf libdml.so.$(VERSION_MAJOR) $(DESTDIR)$(PREFIX)/lib/libdml.so
	install -m 644 include/dml.h $(DESTDIR)$(PREFIX)/include/dml.h
	install -m 644 $(BUILD)/dml.pc $(DESTDIR)$(PREFIX)/lib/pkgconfig/dml.pc

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/dml $(DESTDIR)$(PREFIX)/lib/libdml.* \
	    $(DESTDIR)$(PREFIX)/include/dml.h $(DESTDIR)$(PREFIX)/lib/pkgconfig/dml.pc

clean:
	rm -rf build build-san build-tsan build-fuzz

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
