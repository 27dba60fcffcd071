# snapbpf: build, test, demo. Everything runs as root on a Debian 12 host.
# Go from PATH, or where the official tarball installs it (a fresh root
# shell's PATH does not have /usr/local/go/bin).
GO      ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
BIN     := bin
PKGS    := ./...
# Static binaries: the agent is a guest's /init, and snapbpf runs on any host.
export CGO_ENABLED := 0

.PHONY: all build deps demo unit test lint generate generate-check bpf-tools vet clean bench

all: build

# -buildvcs=auto: `snapbpf version` names the commit even where GOFLAGS
# turns VCS stamping off.
build:
	$(GO) build -buildvcs=auto -o $(BIN)/snapbpf ./cmd/snapbpf
	$(GO) build -buildvcs=auto -o $(BIN)/snapbpf-agent ./cmd/snapbpf-agent

# Debian packages the project needs at run and test time.
APT_PKGS := qemu-system-x86 util-linux fio
deps:
	@missing=""; \
	command -v qemu-system-x86_64 >/dev/null || missing="$$missing qemu-system-x86"; \
	command -v fio >/dev/null || missing="$$missing fio"; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

# The main job on the embedded default: image, snapshot, restores, table.
demo: deps build
	$(BIN)/snapbpf demo

# vet and staticcheck (pinned in go.mod's tool block).
lint:
	$(GO) vet $(PKGS)
	$(GO) tool staticcheck $(PKGS)

# Fast tests: pure logic and orchestration, no guests (-short skips every
# test that boots one); they need neither root nor QEMU.
unit:
	$(GO) test -short -count=1 $(PKGS)

test: deps build lint
	$(GO) test -count=1 -timeout 80m $(PKGS)

BENCH_OUT ?= bench-results
# The reduced evaluation: json, bert, alloc, python:pyaes; 3 runs; N 1, 2, 4
# (the Go functions about 6 min on these 2-CPU TCG machines, pyaes as much
# again or more: see README). `$(BIN)/snapbpf bench --full` runs everything. Re-running with the same BENCH_OUT resumes; to refresh
# the committed report, run into a new directory and copy it to docs/bench.
bench: deps build
	$(BIN)/snapbpf bench --out $(BENCH_OUT)

# The BPF toolchain: the committed objects are what Debian 12's clang 14,
# llvm-strip 14 and libbpf-dev headers make of bpf/, byte for byte, so
# generate names that clang rather than whichever clang is first in PATH.
export BPF2GO_CC    ?= clang-14
export BPF2GO_STRIP ?= llvm-strip-14
bpf-tools:
	@missing=""; \
	command -v $(BPF2GO_CC) >/dev/null || missing="$$missing clang-14"; \
	command -v $(BPF2GO_STRIP) >/dev/null || missing="$$missing llvm-14"; \
	[ -f /usr/include/bpf/bpf_helpers.h ] || missing="$$missing libbpf-dev"; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

# Regenerate the BPF objects and their Go bindings from bpf/*.c (bpf2go).
generate: bpf-tools
	$(GO) generate ./...

# Fails when go generate would change a committed file: edited C whose
# objects were not regenerated, or objects made by another toolchain.
generate-check: generate
	@git rev-parse --is-inside-work-tree >/dev/null || { echo "generate-check compares with git: needs a git checkout"; exit 1; }; \
	changed=$$(git status --porcelain --untracked-files=all -- ':(glob)**/*_bpfel.go' ':(glob)**/*_bpfel.o'); \
	if [ -n "$$changed" ]; then \
		echo "go generate changed committed files (run make generate and commit them):"; \
		echo "$$changed"; \
		git --no-pager diff --stat -- ':(glob)**/*_bpfel.go' ':(glob)**/*_bpfel.o'; \
		exit 1; \
	fi; \
	echo "generated BPF code matches bpf/"

clean:
	rm -rf $(BIN)
