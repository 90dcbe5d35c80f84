package org.ublkmirror.cli;

import org.ublkmirror.mirror.MirrorConfig;
import picocli.CommandLine.Option;

import java.io.IOException;
import java.nio.file.Path;

/** Options every mirror command shares. */
final class Common {
    @Option(names = "--conf-dir", description = "Where mirror configurations live (default: $UBLK_MIRROR_CONF_DIR or /etc/ublk-mirror).")
    Path confDir;

    Path confDir() {
        return confDir != null ? confDir : MirrorConfig.confDir();
    }

    MirrorConfig load(String name) throws IOException {
        return MirrorConfig.load(confDir(), name);
    }
}
