package dev.skein.e2e;

import static dev.skein.e2e.Util.emit;
import static dev.skein.e2e.Util.obj;

import java.io.PrintWriter;
import java.io.StringWriter;
import java.util.Arrays;

/**
 * The Java client (org.apache.kafka:kafka-clients) driven against skein, one scenario group per
 * JVM: {@code java -cp ... dev.skein.e2e.Main SCENARIO BOOTSTRAP [ARGS...]}.
 *
 * <p>Every scenario prints JSON lines on stdout; the last is its report ({"report": ...}), which
 * tests/e2e/test_java_client.py checks. A scenario that cannot finish prints {"fatal": ...} and
 * exits 1.
 */
public final class Main {
  private Main() {}

  public static void main(String[] args) {
    if (args.length < 2) {
      System.err.println(
          "usage: Main produce|group|static|admin|cluster BOOTSTRAP [ARGS...]\n"
              + "  produce BOOTSTRAP TOPIC_PREFIX           every codec, keys, headers, timestamps; read back\n"
              + "  group BOOTSTRAP TOPIC PROTOCOL           PROTOCOL: range | cooperative-sticky | consumer (KIP-848)\n"
              + "  static BOOTSTRAP TOPIC restart|fence     static membership (group.instance.id)\n"
              + "  admin BOOTSTRAP PREFIX                   the Admin client\n"
              + "  cluster BOOTSTRAP TOPIC                  acks=all producer and a group member across a broker kill");
      System.exit(2);
    }
    String[] rest = Arrays.copyOfRange(args, 2, args.length);
    try {
      switch (args[0]) {
        case "produce" -> ProduceScenario.run(args[1], rest);
        case "group" -> GroupScenarios.group(args[1], rest);
        case "static" -> GroupScenarios.staticMembers(args[1], rest);
        case "admin" -> AdminScenario.run(args[1], rest);
        case "cluster" -> ClusterScenario.run(args[1], rest);
        default -> {
          System.err.println("unknown scenario " + args[0]);
          System.exit(2);
        }
      }
    } catch (Throwable t) {
      StringWriter sw = new StringWriter();
      t.printStackTrace(new PrintWriter(sw));
      emit(obj("fatal", t.toString(), "trace", sw.toString()));
      System.out.flush();
      Runtime.getRuntime().halt(1);
    }
    System.out.flush();
    // Client threads left by a failing client must not keep the JVM alive.
    Runtime.getRuntime().halt(0);
  }
}
