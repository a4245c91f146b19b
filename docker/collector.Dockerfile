# The test backend (tests/collector/collector.py, a PostHog-compatible
# /batch endpoint that prints what it receives) as an image, for
# docker/compose.yaml: on the same Debian base as the agent, with Debian's
# python3, so that it builds from the Debian archive alone.
FROM debian:bookworm-slim
RUN apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3 \
    && rm -rf /var/lib/apt/lists/*
COPY tests/collector/collector.py /collector/collector.py
USER 10002:10002
EXPOSE 8080
ENTRYPOINT ["python3", "/collector/collector.py", "--host", "0.0.0.0", "--port", "8080", "--verbose"]
