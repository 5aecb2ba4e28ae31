# scim2-server, the SCIM 2.0 target of the SCIM connector, for compose.
FROM python:3.11-slim
RUN pip install --no-cache-dir scim2-server
EXPOSE 8080
CMD ["scim2-server", "--host", "0.0.0.0", "--port", "8080"]
