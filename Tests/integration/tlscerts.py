"""Test certificates made with the openssl command: a CA, a server certificate for localhost and
127.0.0.1, a client certificate, and a second server certificate for reload tests."""
import os
import subprocess


def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make(directory):
    d = str(directory)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
             "-days", "2", "-subj", "/CN=websocksy test CA", cwd=d)
    for name, cn, ext in [("server", "localhost", "subjectAltName=DNS:localhost,IP:127.0.0.1"),
                          ("server2", "localhost", "subjectAltName=DNS:localhost,IP:127.0.0.1"),
                          ("client", "test client", "extendedKeyUsage=clientAuth")]:
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                 "-subj", f"/CN={cn}", cwd=d)
        with open(os.path.join(d, f"{name}.ext"), "w") as f:
            f.write(ext + "\n")
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext", cwd=d)
    # A certificate file with the key appended, and a chain file (leaf, then CA).
    with open(os.path.join(d, "combined.pem"), "w") as f:
        f.write(open(os.path.join(d, "server.pem")).read() + open(os.path.join(d, "server.key")).read())
    with open(os.path.join(d, "chain.pem"), "w") as f:
        f.write(open(os.path.join(d, "server.pem")).read() + open(os.path.join(d, "ca.pem")).read())
    return d
