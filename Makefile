# The README's commands: `make test` runs everything CI runs.
GO       ?= go
PKGS     ?= ./...
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
COMMIT   ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
LDFLAGS  := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)

.PHONY: test deps fmt-check vet unit build run-dev bench chaos lint

test: deps fmt-check vet unit

deps:
	@scripts/install-test-deps

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet $(PKGS)

unit:
	$(GO) test -race -count=1 -timeout 20m $(PKGS)

lint: fmt-check vet

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/connector ./cmd/connector

run-dev:
	$(GO) run ./cmd/connector dev

bench: deps
	$(GO) run ./bench

chaos: deps
	$(GO) run ./bench --chaos
