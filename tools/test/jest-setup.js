// Tests never reach the network: make sure no proxy variables redirect loopback traffic.
delete process.env.HTTP_PROXY;
delete process.env.HTTPS_PROXY;
delete process.env.http_proxy;
delete process.env.https_proxy;
