package org.ublkmirror.cli;

import org.ublkmirror.leg.MetadataException;
import picocli.CommandLine;
import picocli.CommandLine.Command;

import java.io.IOException;
import java.io.PrintWriter;
import java.nio.file.NoSuchFileException;

/**
 * mirrorctl: the operator's tool, modelled on mdadm and drbdadm. A thin shell over the Java API
 * (org.ublkmirror.mirror): everything here a Java program can do too.
 *
 * <p>Exit codes (scripts can trust them): 0 done / identical; 1 verify found differences;
 * 2 usage error; 3 bad input (metadata, wrong leg, refusal to overwrite, split brain);
 * 4 the mirror is not in a state for this (not running, already running); 5 I/O error.
 */
@Command(name = "mirrorctl", mixinStandardHelpOptions = true, version = "mirrorctl 0.1.0",
        description = "Manage ublk-mirror mirrored block devices.",
        subcommands = {CreateCmd.class, StartCmd.class, StopCmd.class, StatusCmd.class, DetachCmd.class, AttachCmd.class,
                ResyncCmd.class, VerifyCmd.class, LogCmd.class, TagsCmd.class, ReconcileCmd.class, DoctorCmd.class, GatewayCmd.class, LogReceiverCmd.class, ConfigCmd.class,
                CommandLine.HelpCommand.class, picocli.AutoComplete.GenerateCompletion.class},
        exitCodeListHeading = "%nExit codes:%n",
        exitCodeList = {"0:done; for verify: legs identical", "1:verify found differing ranges", "2:usage error",
                "3:bad input (corrupt or foreign metadata, mismatched legs, refusal to overwrite, split brain)",
                "4:the mirror is not in a state for this (not running, already running)", "5:I/O error"})
public final class Mirrorctl implements Runnable {
    public static final int OK = 0, DIFFER = 1, USAGE = 2, BAD_INPUT = 3, STATE = 4, IO = 5;

    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    @Override
    public void run() {
        throw new CommandLine.ParameterException(spec.commandLine(), "name a command (mirrorctl help lists them)");
    }

    /** A failure with its exit code and one line of text. */
    static final class Failure extends RuntimeException {
        final int code;

        Failure(int code, String message) {
            super(message);
            this.code = code;
        }
    }

    public static CommandLine commandLine() {
        CommandLine cl = new CommandLine(new Mirrorctl());
        cl.setExecutionExceptionHandler((ex, cmd, parsed) -> {
            PrintWriter err = cmd.getErr();
            Throwable e = ex;
            if (e instanceof java.io.UncheckedIOException u) e = u.getCause();
            int code;
            String msg;
            if (e instanceof Failure f) {
                code = f.code;
                msg = f.getMessage();
            } else if (e instanceof MetadataException || e instanceof IllegalArgumentException) {
                code = BAD_INPUT;
                msg = e.getMessage();
            } else if (e instanceof NoSuchFileException n) {
                code = BAD_INPUT;
                msg = n.getFile() + ": " + (n.getReason() != null ? n.getReason() : "no such file");
            } else if (e instanceof java.nio.file.AccessDeniedException a) {
                code = BAD_INPUT;
                msg = a.getFile() + ": permission denied (run as root?)";
            } else if (e instanceof IllegalStateException) {
                code = STATE;
                msg = e.getMessage();
            } else if (e instanceof IOException) {
                code = IO;
                msg = e.getMessage();
            } else {
                code = IO;
                msg = e.toString();
            }
            err.println("mirrorctl: " + msg);
            if (System.getenv("MIRRORCTL_DEBUG") != null) e.printStackTrace(err);
            err.flush();
            return code;
        });
        return cl;
    }

    public static void main(String[] args) {
        int rc = commandLine().execute(args);
        System.exit(rc);
    }
}
