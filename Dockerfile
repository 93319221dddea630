# syntax=docker/dockerfile:1
# Build: docker build --build-arg VERSION=$(git describe --tags --always) -t prismsync .
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
COPY --from=build /out/prismsync /usr/local/bin/prismsync
# Mount the mapping file here (or set MAPPING_FILE).
ENV MAPPING_FILE=/etc/prismsync/mapping.yaml \
    LOG_FORMAT=json
USER nonroot:nonroot
ENTRYPOINT ["/usr/local/bin/prismsync"]
CMD ["run"]
