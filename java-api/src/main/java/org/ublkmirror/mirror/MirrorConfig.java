package org.ublkmirror.mirror;

import org.ublkmirror.gateway.TlsFiles;
import org.ublkmirror.logship.ShipTarget;

import java.io.IOException;
import java.io.Reader;
import java.io.Writer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.Properties;

/**
 * A mirror's configuration, kept by name in the config directory (like /etc/mdadm/mdadm.conf,
 * one file per mirror): where its legs are, where the tracking log is shipped (a directory, a log
 * receiver), which host id writes, the TLS files for an nbds:// secondary. The legs' superblocks
 * are the authority on everything else.
 */
public record MirrorConfig(String name, String primary, String secondary, Path shipDir, int hostId, long epochMillis,
                           ShipTarget shipTo, TlsFiles secondaryTls) {

    public static final String DEFAULT_CONF_DIR = "/etc/ublk-mirror";

    public MirrorConfig {
        if (name == null || !name.matches("[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")) {
            throw new IllegalArgumentException("mirror name '" + name + "' is invalid: use letters, digits, '.', '_', '-' (at most 63)");
        }
        if (primary == null || secondary == null) {
            throw new IllegalArgumentException("a mirror needs --primary and --secondary");
        }
        primary = canonical(primary);
        secondary = canonical(secondary);
        if (primary.equals(secondary)) {
            throw new IllegalArgumentException("primary and secondary are the same file (" + primary + "); give two different legs");
        }
        if (epochMillis <= 0) epochMillis = 60_000;
    }

    /** Without TLS files for the secondary. */
    public MirrorConfig(String name, String primary, String secondary, Path shipDir, int hostId, long epochMillis,
                        ShipTarget shipTo) {
        this(name, primary, secondary, shipDir, hostId, epochMillis, shipTo, null);
    }

    /** Without a log receiver (--ship-to). */
    public MirrorConfig(String name, String primary, String secondary, Path shipDir, int hostId, long epochMillis) {
        this(name, primary, secondary, shipDir, hostId, epochMillis, null);
    }

    /** The same configuration shipping the tracking log to {@code target} (a log receiver) too. */
    public MirrorConfig withShipTo(ShipTarget target) {
        return new MirrorConfig(name, primary, secondary, shipDir, hostId, epochMillis, target, secondaryTls);
    }

    /** The same configuration reaching an nbds:// secondary with {@code tls}. */
    public MirrorConfig withSecondaryTls(TlsFiles tls) {
        return new MirrorConfig(name, primary, secondary, shipDir, hostId, epochMillis, shipTo, tls);
    }

    /** True when the secondary is an nbds:// (NBD over TLS) address. */
    public boolean secondaryNeedsTls() {
        return secondary.startsWith("nbds://");
    }

    /**
     * Refuses a secondary that cannot be reached as configured: nbds:// without TLS files, TLS
     * files for a secondary that is not nbds://. (Whether the files are readable is checked by
     * {@link TlsFiles#context()}.)
     */
    public void checkSecondaryTls() {
        if (secondaryNeedsTls() && secondaryTls == null) {
            throw new IllegalArgumentException("secondary " + secondary + " is NBD over TLS: give --secondary-tls-keystore, "
                    + "--secondary-tls-truststore and --secondary-tls-password-file");
        }
        if (!secondaryNeedsTls() && secondaryTls != null) {
            throw new IllegalArgumentException("--secondary-tls-* options need an nbds://host[:port]/export secondary, not " + secondary);
        }
    }

    /** Legs given as paths (files, block devices). */
    public MirrorConfig(String name, Path primary, Path secondary, Path shipDir, int hostId, long epochMillis) {
        this(name, primary == null ? null : primary.toString(), secondary == null ? null : secondary.toString(), shipDir, hostId, epochMillis);
    }

    /** A leg spec as stored: nbd:// and nbds:// URLs as given, paths made absolute. */
    static String canonical(String spec) {
        return org.ublkmirror.leg.Stores.isRemote(spec) ? spec : Path.of(spec).toAbsolutePath().normalize().toString();
    }

    public static Path confDir() {
        String d = System.getenv("UBLK_MIRROR_CONF_DIR");
        return Path.of(d != null && !d.isEmpty() ? d : DEFAULT_CONF_DIR);
    }

    public static Path file(Path dir, String name) {
        return dir.resolve(name + ".conf");
    }

    public void save(Path dir) throws IOException {
        Files.createDirectories(dir);
        Properties p = new Properties();
        p.setProperty("name", name);
        p.setProperty("primary", primary);
        p.setProperty("secondary", secondary);
        if (shipDir != null) p.setProperty("ship-dir", shipDir.toAbsolutePath().toString());
        if (shipTo != null) {
            p.setProperty("ship-to", shipTo.address());
            if (shipTo.tls()) {
                p.setProperty("ship-tls-keystore", shipTo.keyStore().toAbsolutePath().toString());
                p.setProperty("ship-tls-truststore", shipTo.trustStore().toAbsolutePath().toString());
                p.setProperty("ship-tls-password-file", shipTo.passwordFile().toAbsolutePath().toString());
            }
        }
        if (secondaryTls != null) {
            p.setProperty("secondary-tls-keystore", secondaryTls.keyStore().toString());
            p.setProperty("secondary-tls-truststore", secondaryTls.trustStore().toString());
            p.setProperty("secondary-tls-password-file", secondaryTls.passwordFile().toString());
        }
        p.setProperty("host-id", Integer.toString(hostId));
        p.setProperty("epoch-ms", Long.toString(epochMillis));
        Path tmp = dir.resolve("." + name + ".conf.tmp");
        try (Writer w = Files.newBufferedWriter(tmp)) {
            p.store(w, "ublk-mirror " + name);
        }
        Files.move(tmp, file(dir, name), StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
    }

    public static MirrorConfig load(Path dir, String name) throws IOException {
        Path f = file(dir, name);
        if (!Files.exists(f)) {
            throw new java.nio.file.NoSuchFileException(f.toString(), null,
                    "no mirror named '" + name + "' (create it with 'mirrorctl create " + name + " --primary ... --secondary ...')");
        }
        Properties p = new Properties();
        try (Reader r = Files.newBufferedReader(f)) {
            p.load(r);
        }
        String ship = p.getProperty("ship-dir");
        return new MirrorConfig(p.getProperty("name", name), p.getProperty("primary"),
                p.getProperty("secondary"), ship == null ? null : Path.of(ship),
                Integer.parseInt(p.getProperty("host-id", "1")), Long.parseLong(p.getProperty("epoch-ms", "60000")),
                p.getProperty("ship-to") == null ? null : new ShipTarget(p.getProperty("ship-to"), path(p, "ship-tls-keystore"),
                        path(p, "ship-tls-truststore"), path(p, "ship-tls-password-file")),
                TlsFiles.of(path(p, "secondary-tls-keystore"), path(p, "secondary-tls-truststore"), path(p, "secondary-tls-password-file")));
    }

    private static Path path(Properties p, String key) {
        String v = p.getProperty(key);
        return v == null ? null : Path.of(v);
    }
}
