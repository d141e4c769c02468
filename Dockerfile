# knd node daemon image: small Python base, iproute2 and ethtool for troubleshooting from inside
# the pod (knd itself never shells out on the hot path), pinned versions, runtime deps only.
FROM python:3.11.7-slim-bookworm

RUN apt-get update \
 && apt-get install -y --no-install-recommends iproute2=6.1.0-3 ethtool=1:6.1-1 pci.ids \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/knd
# The wheels the daemon imports, as `scripts/image build` picks them from the lock: not the
# `kubernetes` client (an extra, for --kubeconfig only) nor the CEL package's CLI dependencies.
COPY requirements.runtime.lock pyproject.toml ./
COPY scripts/image ./scripts/image
RUN python3 scripts/image packages > /tmp/wheels.txt \
 && pip install --no-cache-dir --no-deps -r /tmp/wheels.txt && rm -rf scripts /tmp/wheels.txt
COPY README.md ./
COPY src ./src
RUN pip install --no-cache-dir --no-deps . && rm -rf /opt/knd/src \
 && ln -s "$(command -v knd)" /dranet

# DraNet's DaemonSet runs `/dranet FLAGS` (as `args`, or as `command`): both mean `knd driver`.

ENTRYPOINT ["knd"]
CMD ["driver"]
