package org.ublkmirror.cli;

import org.ublkmirror.gateway.TlsFiles;
import org.ublkmirror.logship.ReceiverClient;
import org.ublkmirror.logship.ReceiverStore;
import org.ublkmirror.logship.ShipTarget;
import org.ublkmirror.mirror.Mirror;
import org.ublkmirror.mirror.MirrorConfig;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.Callable;

@Command(name = "create", description = {"Initialise metadata on a primary and a secondary leg.",
        "Leg files that do not exist are created sparse with --size. A leg that already holds data or metadata is refused unless --force."})
final class CreateCmd implements Callable<Integer> {
    @Mixin
    Common common;

    @Mixin
    LinkOptions link;

    @Parameters(index = "0", paramLabel = "NAME", description = "Mirror name (letters, digits, '.', '_', '-').")
    String name;

    @Option(names = "--primary", required = true, paramLabel = "LEG", description = "Primary leg: a file or block device.")
    String primary;

    @Option(names = "--secondary", required = true, paramLabel = "LEG", description = "Secondary leg: a file, a block device, or nbd://host[:port]/export (a gateway: 'mirrorctl gateway'); nbds:// for NBD over TLS (with --secondary-tls-*).")
    String secondary;

    @Option(names = "--secondary-tls-keystore", paramLabel = "P12", description = "TLS to an nbds:// secondary: this mirror's certificate and key (PKCS#12).")
    Path secondaryTlsKeyStore;

    @Option(names = "--secondary-tls-truststore", paramLabel = "P12", description = "TLS to an nbds:// secondary: the gateway's certificate or its CA (PKCS#12).")
    Path secondaryTlsTrustStore;

    @Option(names = "--secondary-tls-password-file", paramLabel = "FILE", description = "TLS to an nbds:// secondary: the password of both PKCS#12 files (first line).")
    Path secondaryTlsPasswordFile;

    @Option(names = "--size", paramLabel = "SIZE", description = "Volume size (e.g. 1G); leg files are created sparse to hold it plus metadata. Default: the largest both legs hold.")
    String size;

    @Option(names = "--block-size", defaultValue = "4096", paramLabel = "BYTES", description = "Block size and tracking granularity (default ${DEFAULT-VALUE}).")
    int blockSize;

    @Option(names = "--ship-dir", paramLabel = "DIR", description = "Second location the tracking log is shipped to.")
    Path shipDir;

    @Option(names = "--ship-to", paramLabel = "HOST:PORT",
            description = "A log receiver ('mirrorctl log-receiver' on another host) the tracking log is shipped to, asynchronously.")
    String shipTo;

    @Option(names = "--ship-tls-keystore", paramLabel = "P12", description = "TLS to the log receiver: this mirror's certificate and key (PKCS#12).")
    Path shipTlsKeyStore;

    @Option(names = "--ship-tls-truststore", paramLabel = "P12", description = "TLS to the log receiver: the receiver's certificate or its CA (PKCS#12).")
    Path shipTlsTrustStore;

    @Option(names = "--ship-tls-password-file", paramLabel = "FILE", description = "TLS to the log receiver: the password of both PKCS#12 files (first line).")
    Path shipTlsPasswordFile;

    @Option(names = "--host-id", defaultValue = "1", description = "This host's id in write tags (0-65535, default ${DEFAULT-VALUE}).")
    int hostId;

    @Option(names = "--epoch", defaultValue = "60s", paramLabel = "DURATION", description = "Time resolution of the tracking log (default ${DEFAULT-VALUE}).")
    String epoch;

    @Option(names = "--force", description = "Overwrite legs that hold data or metadata, and an existing configuration.")
    boolean force;

    private static Path abs(Path p) {
        return p == null ? null : p.toAbsolutePath();
    }

    /** A warning if the receiver cannot be reached or holds the name for another volume (shipping would be refused). */
    static String checkReceiver(MirrorConfig cfg, java.util.UUID volume) {
        try (ReceiverClient c = cfg.shipTo().client(ReceiverClient.Options.defaults())) {
            for (ReceiverStore.Entry e : c.list()) {
                if (e.name().equals(cfg.name()) && !e.volume().equals(volume)) {
                    return "log receiver " + c.address() + " holds a log of another mirror named '" + cfg.name() + "' (volume " + e.volume()
                            + "): it will refuse this one; remove its directory " + cfg.name() + "@" + e.volume() + " on the receiver";
                }
            }
            return null;
        } catch (java.io.IOException e) {
            return e.getMessage() + " (the log is shipped once it can be reached)";
        }
    }

    @Override
    public Integer call() throws Exception {
        long epochMs = Units.parseTime("now", 0) - Units.parseTime("-" + epoch.replaceFirst("^-", ""), 0);
        if (hostId < 0 || hostId > 65535) throw new IllegalArgumentException("--host-id " + hostId + " is outside 0..65535");
        MirrorConfig cfg = new MirrorConfig(name, primary, secondary,
                shipDir == null ? null : shipDir.toAbsolutePath(), hostId, epochMs);
        if (secondaryTlsKeyStore != null || secondaryTlsTrustStore != null || secondaryTlsPasswordFile != null) {
            try {
                cfg = cfg.withSecondaryTls(TlsFiles.of(secondaryTlsKeyStore, secondaryTlsTrustStore, secondaryTlsPasswordFile));
            } catch (IllegalArgumentException e) {
                throw new IllegalArgumentException("--secondary-tls-keystore, --secondary-tls-truststore and --secondary-tls-password-file go together: give all three");
            }
        }
        cfg.checkSecondaryTls();
        if (cfg.secondaryTls() != null) {
            try {
                cfg.secondaryTls().context(); // a missing or wrong key store or password fails now, before the legs are touched
            } catch (java.nio.file.NoSuchFileException e) {
                throw e;
            } catch (java.io.IOException e) {
                throw new Mirrorctl.Failure(Mirrorctl.BAD_INPUT, e.getMessage() + "; check --secondary-tls-keystore, --secondary-tls-truststore and --secondary-tls-password-file");
            }
        }
        if (shipTo != null) {
            cfg = cfg.withShipTo(new ShipTarget(shipTo, abs(shipTlsKeyStore), abs(shipTlsTrustStore), abs(shipTlsPasswordFile)));
            cfg.shipTo().options(ReceiverClient.Options.defaults()); // a wrong key store or password fails now, before the legs are touched
        } else if (shipTlsKeyStore != null || shipTlsTrustStore != null || shipTlsPasswordFile != null) {
            throw new IllegalArgumentException("--ship-tls-* options need --ship-to");
        }
        Path conf = MirrorConfig.file(common.confDir(), name);
        if (Files.exists(conf) && !force) {
            throw new Mirrorctl.Failure(Mirrorctl.BAD_INPUT, "a mirror named '" + name + "' already exists (" + conf
                    + "); pick another name or use --force");
        }
        long bytes = size == null ? 0 : Units.parseSize(size);
        org.ublkmirror.link.LinkConfig linkCfg = link.apply(org.ublkmirror.link.LinkConfig.DEFAULTS); // bad values: refused before any write
        Mirror.Created c = Mirror.create(cfg, bytes, blockSize, force, null);
        cfg.save(common.confDir());
        linkCfg.save(common.confDir(), name);
        System.out.printf("created mirror %s: %s volume (%d blocks of %d bytes), uuid %s%n", name,
                Units.human(c.dataBlocks() * c.blockSize()), c.dataBlocks(), c.blockSize(), c.volume());
        System.out.printf("  primary   %s%n  secondary %s%s%n", cfg.primary(), cfg.secondary(), cfg.secondaryTls() != null ? " (TLS)" : "");
        if (shipDir != null) System.out.printf("  tracking log shipped to %s%n", cfg.shipDir());
        System.out.printf("  resync policy %s%n", linkCfg.policy().lower());
        if (shipTo != null) {
            System.out.printf("  tracking log shipped to log receiver %s%s%n", cfg.shipTo().address(), cfg.shipTo().tls() ? " (TLS)" : "");
            String w = checkReceiver(cfg, c.volume());
            if (w != null) System.err.println("mirrorctl: warning: " + w);
        }
        return 0;
    }
}
