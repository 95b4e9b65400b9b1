"""`cnnkit certs DIR --hosts HOST ...`: a CA and one certificate per machine, for a TLS Dask cluster."""
from pathlib import Path

from cnnkit._arguments import POSITIVE_INT


def add_parser(commands):
    certs = commands.add_parser(
        "certs", help="write the TLS certificates of a cnnkit sweep cluster",
        description="Write into DIR a certificate authority (ca.pem; its key ca-key.pem stays here), a certificate "
                    "and key per machine (HOST.pem, HOST-key.pem) for `dask scheduler` and `dask worker`, and one "
                    "for the machine running `cnnkit sweep` (client.pem, client-key.pem). Keys are written 0600. "
                    "When DIR holds a CA already, it signs the new certificates, so machines can be added later. "
                    "Needs the cryptography package (cnnkit[sweep]).",
        epilog="Example: cnnkit certs sweep-certs --hosts 10.0.0.1 10.0.0.2 node3.lan")
    certs.add_argument("folder", type=Path, metavar="DIR", help="folder to write the files into")
    certs.add_argument("--hosts", nargs="+", required=True, metavar="HOST",
                       help="each machine's IP address or DNS name, as the others reach it")
    certs.add_argument("--days", type=POSITIVE_INT, default=365,
                       help="how long new certificates are valid (default: 365 days)")
    certs.set_defaults(run=run)


def run(args):
    from cnnkit._tls import CLIENT, write_cluster_certificates

    written = write_cluster_certificates(args.folder, args.hosts, args.days)
    host = args.hosts[0]
    print(f"wrote {', '.join(path.name for path in written)} in {args.folder}/\n"
          f"Copy ca.pem to every machine, HOST.pem and HOST-key.pem to HOST, {CLIENT}.pem and {CLIENT}-key.pem to "
          f"the machine running cnnkit sweep; keep ca-key.pem here. Then, with {host} as the scheduler:\n"
          f"  dask scheduler --protocol tls --host {host} --tls-ca-file ca.pem --tls-cert {host}.pem "
          f"--tls-key {host}-key.pem --dashboard-address 127.0.0.1:8787\n"
          f"  dask worker tls://{host}:8786 --host HOST --tls-ca-file ca.pem --tls-cert HOST.pem "
          f"--tls-key HOST-key.pem --nworkers $(nproc) --nthreads 1 --dashboard-address 127.0.0.1:0\n"
          f"  cnnkit sweep --scheduler tls://{host}:8786 --tls-ca-file ca.pem --tls-cert {CLIENT}.pem "
          f"--tls-key {CLIENT}-key.pem ...")
    return 0
