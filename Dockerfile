# acaso-mail in a container: `docker build -t acaso-mail .` then
# `docker run --rm IMAGE drain-hourly` reads like the CLI (the image's entrypoint is
# acaso-mail). Configuration comes from the environment, as everywhere else
# (QUEUE_SERVICE_URL, SENDINBLUE_API_KEY, PUSHGATEWAY_URL...: docs/configuration.md).
#
# Stages (targets):
#   builder     compiles acaso-mail (release profile: stripped) and the fake-brevo example
#   prebuilt    the same two binaries taken from target/container/ in the build context,
#               for a build on a machine that has compiled them already (scripts/check-image)
#   runtime     the image: Debian slim, user 10001 (acaso-mail), state volume; the
#               default target (the last stage). No man pages or completions: the slim
#               base has neither man nor bash-completion (`acaso-mail --help` is there)
#   fake-brevo  the Brevo stand-in for the compose stack (nothing is mailed)
#   cron        runtime + supercronic + the compose crontabs: the compose stack's scheduler
#
# BINARIES picks where the binaries come from: builder (default) or prebuilt.
ARG BINARIES=builder
# The toolchain CI builds and tests with; rust-version in Cargo.toml is the minimum.
ARG RUST_VERSION=1.95
ARG DEBIAN=bookworm

FROM rust:${RUST_VERSION}-slim-${DEBIAN} AS builder
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY examples examples
# The fake-brevo example is the test suite's fake (#[path] include), with the Brevo
# schemas it checks requests against (include_str!).
COPY tests/support tests/support
COPY tests/fixtures/brevo tests/fixtures/brevo
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin acaso-mail --example fake-brevo \
 && mkdir -p /out \
 && cp target/release/acaso-mail target/release/examples/fake-brevo /out/

FROM scratch AS prebuilt
COPY target/container/acaso-mail target/container/fake-brevo /out/

FROM ${BINARIES} AS binaries

FROM debian:${DEBIAN}-slim AS fake-brevo
COPY --from=binaries /out/fake-brevo /usr/local/bin/fake-brevo
USER nobody
EXPOSE 8025
ENTRYPOINT ["/usr/local/bin/fake-brevo"]
CMD ["--host", "0.0.0.0", "--port", "8025", "--credits", "300"]

# supercronic: cron made for containers (an ordinary crontab, the container's
# environment passed to jobs, their output in the container's log, a graceful stop
# that waits for running jobs on SIGTERM). Fetched from its release page and checked
# against the checksum its release notes publish. amd64 only.
FROM debian:${DEBIAN}-slim AS supercronic
ARG SUPERCRONIC_VERSION=v0.2.29
ARG SUPERCRONIC_SHA1SUM=cd48d45c4b10f3f0bfdd3a57d054cd05ac96812b
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && curl -fsSLo /supercronic \
      "https://github.com/aptible/supercronic/releases/download/${SUPERCRONIC_VERSION}/supercronic-linux-amd64" \
 && echo "${SUPERCRONIC_SHA1SUM}  /supercronic" | sha1sum -c - \
 && chmod 0755 /supercronic

FROM debian:${DEBIAN}-slim AS runtime
# A fixed uid, so that a host directory or a Dokku storage mount can be chowned to it.
# Numeric everywhere: Kubernetes' runAsNonRoot refuses a USER it cannot tell is not root,
# and a name would be looked up in the build host's passwd by some builders (podman
# --isolation chroot gave the state directory the host's own acaso-mail uid). The state
# directory is 0700, as acaso-mail wants it (else every run warns).
RUN groupadd --gid 10001 acaso-mail \
 && useradd --uid 10001 --gid 10001 --home-dir /var/lib/acaso-mail \
      --no-create-home --shell /usr/sbin/nologin acaso-mail \
 && install -d -o 10001 -g 10001 -m 0700 /var/lib/acaso-mail
COPY --from=binaries /out/acaso-mail /usr/local/bin/acaso-mail
# The journal of sent mails and the run lock: keep it across runs and containers, or a
# redelivered mail could be sent twice.
ENV ACASO_MAIL_STATE_DIR=/var/lib/acaso-mail
VOLUME /var/lib/acaso-mail
WORKDIR /var/lib/acaso-mail
USER 10001:10001
ENTRYPOINT ["/usr/local/bin/acaso-mail"]
CMD ["--help"]

FROM runtime AS cron
USER root
# supercronic reads the schedule's time zone (TZ) from the system's zone files.
RUN apt-get update \
 && apt-get install -y --no-install-recommends tzdata \
 && rm -rf /var/lib/apt/lists/*
COPY --from=supercronic /supercronic /usr/local/bin/supercronic
COPY deploy/compose/*.crontab /etc/acaso-mail/
USER 10001:10001
ENV TZ=America/Recife
ENTRYPOINT ["/usr/local/bin/supercronic"]
CMD ["/etc/acaso-mail/acaso-mail.crontab"]

# The default target: the last stage.
FROM runtime
