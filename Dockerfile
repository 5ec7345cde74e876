# seuss's invoker image: what docker-compose.yml runs in place of OpenWhisk's invoker.
#
#   docker build -t seuss-invoker .
#   docker run --privileged --device /dev/kvm seuss-invoker serve --id 0 ...
#   docker run -p 3233:3233 --privileged --device /dev/kvm seuss-invoker \
#     standalone --api-listen 0.0.0.0:3233 --kafka-listen 0.0.0.0:9092
#
# The runtime stage carries Node.js 20 and Debian bookworm's Python 3.11: the runtime roots
# of nodejs:20 and python:3.11 are built from them, and the process executor runs them.

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -o /out/invoker ./cmd/invoker \
 && CGO_ENABLED=0 go build -trimpath -o /out/mkroot ./runtimes/mkroot

FROM node:20-bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/invoker /out/mkroot /usr/local/bin/
# The runtime roots (read-only, baked into the image): the launchers run on /usr/bin/node
# and /usr/bin/python3.11, the paths the roots keep.
RUN ln -sf /usr/local/bin/node /usr/bin/node \
 && /usr/local/bin/mkroot -out /opt/seuss/roots
ENV SEUSS_ROOTS_DIR=/opt/seuss/roots
# Standalone mode keeps its store and snapshots here.
VOLUME /var/lib/seuss
# 8085: invoker HTTP (/ping, /metrics); 3233: standalone REST API; 9092: standalone's Kafka.
EXPOSE 8085 3233 9092
ENTRYPOINT ["/usr/local/bin/invoker"]
CMD ["serve", "--id", "0"]
