# Build a static binary, then run it as a non-root user on a minimal base.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=devel
ARG COMMIT=unknown
RUN CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X main.version=${VERSION} -X main.commit=${COMMIT}" \
      -o /out/connector ./cmd/connector

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/connector /usr/local/bin/connector
USER nonroot:nonroot
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/connector"]
CMD ["serve", "--config", "/etc/connector/config.yaml"]
