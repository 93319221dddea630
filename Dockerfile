# syntax=docker/dockerfile:1
# Build (the stamps name the build in `prismsync version`, in
# prismsync_build_info and in the image's labels; .git is not sent to the
# builder, so the commit must come as an argument):
#   docker build --build-arg VERSION=$(git describe --tags --always) \
#     --build-arg COMMIT=$(git rev-parse HEAD) \
#     --build-arg CREATED=$(date -u +%Y-%m-%dT%H:%M:%SZ) -t prismsync .
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG COMMIT=unknown
RUN CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X main.buildVersion=${VERSION} -X main.buildCommit=${COMMIT}" \
      -o /out/prismsync ./cmd/prismsync

# distroless/static has CA certificates and a nonroot user, and no shell.
FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
ARG COMMIT=unknown
ARG CREATED=
LABEL org.opencontainers.image.title="prismsync" \
      org.opencontainers.image.description="Keeps Micro CRM objects in step with PostgreSQL rows" \
      org.opencontainers.image.source="https://github.com/prismsync/prismsync" \
      org.opencontainers.image.documentation="https://github.com/prismsync/prismsync#operations" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${COMMIT}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.base.name="gcr.io/distroless/static-debian12:nonroot"
COPY --from=build /out/prismsync /usr/local/bin/prismsync
# Mount the mapping file at /etc/prismsync/mapping.yaml (or set MAPPING_FILE).
# The ops endpoint (/healthz, /readyz, /metrics) listens beyond loopback so
# it can be probed and scraped from outside the container.
ENV MAPPING_FILE=/etc/prismsync/mapping.yaml \
    LOG_FORMAT=json \
    HTTP_ADDR=0.0.0.0:9464
EXPOSE 9464
USER nonroot:nonroot
# No shell or curl in the image: the binary probes its own /healthz.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["/usr/local/bin/prismsync", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/prismsync"]
CMD ["run"]
