# -f with a Dockerfile named app.Dockerfile: app.Dockerfile.dockerignore applies, and the
# context's .dockerignore does not.
ARG BASE
FROM ${BASE:-localhost:5000/strata-test/busybox:latest}
COPY . /ctx/
