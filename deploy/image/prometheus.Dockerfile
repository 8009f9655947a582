# Prometheus from Debian's package on raftnode's debootstrapped base (deploy/image/build.sh).
# The build context is deploy/prometheus/: its rules are baked in; compose mounts them too,
# so edits apply on restart without a rebuild.
FROM raftnode-base

RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb \
 && install -d -o prometheus -g prometheus /prometheus
COPY compose.yml /etc/prometheus/prometheus.yml
COPY alerts.yml rules.yml /etc/prometheus/
USER prometheus
VOLUME /prometheus
EXPOSE 9090
ENTRYPOINT ["/usr/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus", \
     "--web.listen-address=0.0.0.0:9090", "--web.enable-lifecycle"]
