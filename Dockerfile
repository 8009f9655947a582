# raftnode: one member per container. Built by deploy/image/build.sh, which debootstraps the
# base from Debian's packages (no image registry) and puts the wheels in the build context.
FROM raftnode-base

RUN python3 -m venv /opt/raftnode \
 && useradd --system --uid 10001 --home-dir /var/lib/raftnode --shell /usr/sbin/nologin raftnode \
 && install -d -o raftnode -g raftnode -m 0700 /var/lib/raftnode
COPY wheels /wheels
RUN /opt/raftnode/bin/pip install --quiet --no-index --no-cache-dir --find-links /wheels \
      'raftnode[fast]' \
 && rm -rf /wheels

# etcd's flags, read from RAFTNODE_<FLAG>; compose and `docker run -e` override them.
ENV PATH=/opt/raftnode/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    RAFTNODE_DATA_DIR=/var/lib/raftnode/data \
    RAFTNODE_LISTEN_CLIENT_URLS=http://0.0.0.0:2379 \
    RAFTNODE_LISTEN_PEER_URLS=http://0.0.0.0:2380
USER raftnode
WORKDIR /var/lib/raftnode
VOLUME /var/lib/raftnode
EXPOSE 2379 2380
HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=3 \
  CMD ["python3", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:2379/health', timeout=2)"]
# SIGTERM is raftnode's orderly stop (a leader hands leadership on); SIGKILL is the power cut.
STOPSIGNAL SIGTERM
ENTRYPOINT ["raftnode"]
