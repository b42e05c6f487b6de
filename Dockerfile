# One image for every Berth process; the command picks the process.
FROM python:3.11-slim
WORKDIR /opt/berth
COPY clients/python clients/python
COPY pyproject.toml README.md ./
COPY services services
RUN pip install --no-cache-dir ./clients/python . \
 && useradd --system --home /var/lib/berth --create-home berth
USER berth
ENV BERTH_DATA_DIR=/var/lib/berth
EXPOSE 50051 50052 50053 50054
CMD ["python", "-m", "services.registry"]
