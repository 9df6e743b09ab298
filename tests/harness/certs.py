# tests/harness/certs.py - throwaway certificates for the TLS tests.
#
# Made with the openssl command (Debian's openssl package) into a directory
# of the test's own: a CA, a certificate for 127.0.0.1 and localhost signed
# by it (for the nodes and for respgate's listener), a client certificate
# signed by it, and a client certificate from a second CA that nobody
# trusts. EC P-256 keys: quick to make, and what a deployment would use.

import atexit
import os
import shutil
import subprocess
import tempfile


class Certs:
    def __init__(self, directory):
        self.dir = os.path.abspath(directory)
        os.makedirs(self.dir, exist_ok=True)
        self.ca, self.ca_key = self._ca("ca", "respgate test CA")
        self.other_ca, self.other_ca_key = self._ca("other-ca", "a CA nobody trusts")
        self.server, self.server_key = self.issue("server", "127.0.0.1",
                                                  san="IP:127.0.0.1,IP:::1,DNS:localhost")
        self.client, self.client_key = self.issue("client", "respgate test client", usage="clientAuth")
        self.rogue, self.rogue_key = self.issue("rogue", "rogue client", usage="clientAuth", by="other-ca")
        self.wrong_name, self.wrong_name_key = self.issue("wrong-name", "elsewhere", san="DNS:elsewhere.invalid")

    def _path(self, name):
        return os.path.join(self.dir, name)

    def _run(self, *args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)

    def _key(self, name):
        key = self._path(f"{name}.key")
        self._run("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key)
        return key

    def _ca(self, name, cn):
        key = self._key(name)
        crt = self._path(f"{name}.crt")
        self._run("req", "-x509", "-new", "-key", key, "-sha256", "-days", "3", "-subj", f"/CN={cn}",
                  "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                  "-out", crt)
        return crt, key

    def issue(self, name, cn, san=None, usage="serverAuth,clientAuth", by="ca", days=3):
        """A certificate NAME for CN signed by BY (ca or other-ca); returns (crt, key)."""
        key = self._key(name)
        csr, crt, ext = self._path(f"{name}.csr"), self._path(f"{name}.crt"), self._path(f"{name}.ext")
        with open(ext, "w") as f:
            f.write("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
                    f"extendedKeyUsage={usage}\n" + (f"subjectAltName={san}\n" if san else ""))
        self._run("req", "-new", "-key", key, "-subj", f"/CN={cn}", "-out", csr)
        self._run("x509", "-req", "-in", csr, "-CA", self._path(f"{by}.crt"), "-CAkey", self._path(f"{by}.key"),
                  "-CAcreateserial", "-days", str(days), "-sha256", "-extfile", ext, "-out", crt)
        return crt, key

    def serial(self, crt):
        """The serial number of certificate CRT, as openssl prints it."""
        out = subprocess.run(["openssl", "x509", "-in", crt, "-noout", "-serial"], check=True,
                             capture_output=True, text=True, timeout=30).stdout
        return out.strip().split("=", 1)[1]


# RESPGATE_TEST_TLS=1: every cluster the harness starts speaks TLS only, and
# every respgate config from yaml_config() reaches it over TLS, so the
# integration tests run unchanged with TLS to the nodes (README, "Tests").
TLS_MODE = os.environ.get("RESPGATE_TEST_TLS") == "1"
_shared = None


def shared():
    """One set of certificates for the whole test process, made on first use."""
    global _shared
    if _shared is None:
        d = tempfile.mkdtemp(prefix="respgate-certs-")
        atexit.register(shutil.rmtree, d, True)
        _shared = Certs(d)
    return _shared


def cluster_tls_yaml(certs):
    """The cluster: lines (indented) that make respgate reach a TLS cluster made with CERTS."""
    return [f"  tls: yes", f"  tls_ca_file: {certs.ca}", f"  tls_cert_file: {certs.client}",
            f"  tls_key_file: {certs.client_key}"]


def mode_cluster_lines():
    """cluster: lines for a config written by hand: the TLS ones under RESPGATE_TEST_TLS=1, else none."""
    return "".join(f"{line}\n" for line in cluster_tls_yaml(shared())) if TLS_MODE else ""
