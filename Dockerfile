# netforge: multi-stage build, slim runtime image with only the binary.
#   docker build -t netforge .
#   docker run --rm netforge goon --connections 9000 --sleep 0 -y
#   docker run --rm --ulimit nofile=200000:200000 netforge goon --connections 50000 --sleep 0 --source-ip 127.0.0.1-127.0.0.2 -y
#   docker run --rm -p 8080:8080 netforge bp server
FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock rustfmt.toml ./
COPY src ./src
COPY benches ./benches
COPY tests ./tests
RUN cargo build --release --locked && strip target/release/netforge

FROM debian:bookworm-slim
COPY --from=build /src/target/release/netforge /usr/local/bin/netforge
COPY conf /etc/netforge
# Only `bp server` reads PORT: with no --listen (and no `listen` key in a --conf file) it then
# listens on 0.0.0.0:$PORT, so `docker run -p 8080:8080 netforge bp server` is reachable from
# outside the container. goon, serve and proxy ignore it.
ENV PORT=8080
# 8080: `bp server` (PORT above). 9100: the proxy's admin endpoint (/metrics), which listens on
# 127.0.0.1:9100 by default, so inside a container only `--admin 0.0.0.0:9100` (or that
# [admin] address in the file) makes it reachable through `-p 9100:9100`.
EXPOSE 8080 9100
ENTRYPOINT ["netforge"]
CMD ["--help"]
