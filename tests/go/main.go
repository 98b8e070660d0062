// franzgo drives franz-go (kgo and kadm) against a broker for skein's e2e tests
// (tests/e2e/test_franz_go.py). Each subcommand prints one JSON object on its last
// stdout line and exits 0, or prints the failure to stderr and exits 1; the tests
// assert on the JSON (records, offsets, assignments, error codes).
//
//	franzgo produce BOOTSTRAP TOPIC CODEC N PARTITIONS   idempotent producer, keys, headers
//	franzgo consume BOOTSTRAP TOPIC N                    every partition from the start, exactly N records
//	franzgo group BOOTSTRAP TOPIC GROUP classic|848      two members, a leave, a resume
//	franzgo admin BOOTSTRAP TOPIC GROUP                  kadm: topics, partitions, configs, groups, offsets
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

func die(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "franzgo: "+format+"\n", args...)
	os.Exit(1)
}

func must(err error, what string) {
	if err != nil {
		die("%s: %v", what, err)
	}
}

func emit(v any) {
	b, err := json.Marshal(v)
	must(err, "json")
	fmt.Println(string(b))
}

func atoi(s string) int {
	n, err := strconv.Atoi(s)
	must(err, "number "+s)
	return n
}

// errCode is the Kafka error code of err (0 for nil, -1 for a non-Kafka error).
func errCode(err error) int16 {
	if err == nil {
		return 0
	}
	var ke *kerr.Error
	if errors.As(err, &ke) {
		return ke.Code
	}
	return -1
}

func errName(err error) string {
	if err == nil {
		return ""
	}
	var ke *kerr.Error
	if errors.As(err, &ke) {
		return ke.Message
	}
	return err.Error()
}

func baseOpts(bootstrap string) []kgo.Opt {
	return []kgo.Opt{
		kgo.SeedBrokers(bootstrap),
		kgo.DialTimeout(5 * time.Second),
		kgo.RetryTimeout(20 * time.Second),
		kgo.MetadataMaxAge(2 * time.Second),
		kgo.MetadataMinAge(100 * time.Millisecond),
		kgo.FetchMaxWait(200 * time.Millisecond),
	}
}

func main() {
	if len(os.Args) < 2 {
		die("usage: franzgo produce|consume|group|admin ...")
	}
	args := os.Args[2:]
	switch os.Args[1] {
	case "produce":
		if len(args) != 5 {
			die("usage: franzgo produce BOOTSTRAP TOPIC CODEC N PARTITIONS")
		}
		produce(args[0], args[1], args[2], atoi(args[3]), atoi(args[4]))
	case "consume":
		if len(args) != 3 {
			die("usage: franzgo consume BOOTSTRAP TOPIC N")
		}
		consume(args[0], args[1], atoi(args[2]))
	case "group":
		if len(args) != 4 {
			die("usage: franzgo group BOOTSTRAP TOPIC GROUP classic|848")
		}
		group(args[0], args[1], args[2], args[3] == "848")
	case "admin":
		if len(args) != 3 {
			die("usage: franzgo admin BOOTSTRAP TOPIC GROUP")
		}
		admin(args[0], args[1], args[2])
	default:
		die("unknown subcommand %q", os.Args[1])
	}
}

// ---- produce / consume

type produced struct {
	Partition int32 `json:"p"`
	Offset    int64 `json:"o"`
}

func codecOf(name string) kgo.CompressionCodec {
	switch name {
	case "none":
		return kgo.NoCompression()
	case "gzip":
		return kgo.GzipCompression()
	case "snappy":
		return kgo.SnappyCompression()
	case "lz4":
		return kgo.Lz4Compression()
	case "zstd":
		return kgo.ZstdCompression()
	}
	die("unknown codec %q", name)
	return kgo.NoCompression()
}

// produce sends N records with the default (idempotent, acks=all) producer: record i goes to
// partition i%PARTITIONS with key k<i>, value <codec>-v<i> (padded so the codec has something to
// compress) and headers h=x<i>, codec=<codec>.
func produce(bootstrap, topic, codec string, n, parts int) {
	opts := append(baseOpts(bootstrap),
		kgo.DefaultProduceTopic(topic),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerBatchCompression(codecOf(codec)),
		kgo.ProducerLinger(5*time.Millisecond),
	)
	cl, err := kgo.NewClient(opts...)
	must(err, "new client")
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out := make([]produced, n)
	var mu sync.Mutex
	var firstErr error
	pids := map[int64]bool{}
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		r := &kgo.Record{
			Partition: int32(i % parts),
			Key:       []byte(fmt.Sprintf("k%d", i)),
			Value:     []byte(fmt.Sprintf("%s-v%d-%s", codec, i, "payload payload payload payload")),
			Headers: []kgo.RecordHeader{
				{Key: "h", Value: []byte(fmt.Sprintf("x%d", i))},
				{Key: "codec", Value: []byte(codec)},
			},
		}
		wg.Add(1)
		i := i
		cl.Produce(ctx, r, func(r *kgo.Record, err error) {
			defer wg.Done()
			mu.Lock()
			defer mu.Unlock()
			if err != nil && firstErr == nil {
				firstErr = err
			}
			out[i] = produced{r.Partition, r.Offset}
			pids[r.ProducerID] = true
		})
	}
	wg.Wait()
	must(firstErr, "produce")
	ids := []int64{}
	for id := range pids {
		ids = append(ids, id)
	}
	emit(map[string]any{"records": out, "producer_ids": ids})
}

type rec struct {
	Partition int32       `json:"p"`
	Offset    int64       `json:"o"`
	Key       string      `json:"k"`
	Value     string      `json:"v"`
	Headers   [][2]string `json:"h"`
}

func toRec(r *kgo.Record) rec {
	h := [][2]string{}
	for _, x := range r.Headers {
		h = append(h, [2]string{x.Key, string(x.Value)})
	}
	return rec{r.Partition, r.Offset, string(r.Key), string(r.Value), h}
}

// consume reads every partition of TOPIC from its start (no group) until N records arrived, then
// polls a little longer to see that no more come.
func consume(bootstrap, topic string, n int) {
	opts := append(baseOpts(bootstrap),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	)
	cl, err := kgo.NewClient(opts...)
	must(err, "new client")
	defer cl.Close()
	got := []rec{}
	deadline := time.Now().Add(30 * time.Second)
	extra := time.Time{}
	for {
		if len(got) >= n && extra.IsZero() {
			extra = time.Now().Add(500 * time.Millisecond)
		}
		if !extra.IsZero() && time.Now().After(extra) {
			break
		}
		if time.Now().After(deadline) {
			die("consume: %d of %d records within 30 s", len(got), n)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		fs := cl.PollFetches(ctx)
		cancel()
		for _, e := range fs.Errors() {
			if !errors.Is(e.Err, context.DeadlineExceeded) {
				die("consume: fetch error on %s[%d]: %v", e.Topic, e.Partition, e.Err)
			}
		}
		fs.EachRecord(func(r *kgo.Record) { got = append(got, toRec(r)) })
	}
	emit(map[string]any{"records": got})
}

// ---- consumer group

// member is one kgo group consumer; its assignment is tracked by the rebalance callbacks.
type member struct {
	name string
	cl   *kgo.Client
	mu   sync.Mutex
	own  map[int32]bool
	log  []string // assigned/revoked/lost events, in order
}

func (m *member) owned() []int32 {
	m.mu.Lock()
	defer m.mu.Unlock()
	ps := []int32{}
	for p := range m.own {
		ps = append(ps, p)
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
	return ps
}

func newMember(name, bootstrap, topic, grp string, kip848 bool) *member {
	m := &member{name: name, own: map[int32]bool{}}
	change := func(kind string, add bool) func(context.Context, *kgo.Client, map[string][]int32) {
		return func(_ context.Context, _ *kgo.Client, ps map[string][]int32) {
			m.mu.Lock()
			defer m.mu.Unlock()
			for _, p := range ps[topic] {
				if add {
					m.own[p] = true
				} else {
					delete(m.own, p)
				}
			}
			m.log = append(m.log, fmt.Sprintf("%s %v", kind, ps[topic]))
		}
	}
	opts := append(baseOpts(bootstrap),
		kgo.ClientID("franzgo-"+name),
		kgo.ConsumerGroup(grp),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(),
		kgo.HeartbeatInterval(300*time.Millisecond),
		kgo.SessionTimeout(10*time.Second),
		kgo.RebalanceTimeout(10*time.Second),
		kgo.OnPartitionsAssigned(change("assigned", true)),
		kgo.OnPartitionsRevoked(change("revoked", false)),
		kgo.OnPartitionsLost(change("lost", false)),
	)
	if kip848 {
		opts = append(opts, kgo.ServerSideBalancer())
	}
	cl, err := kgo.NewClient(opts...)
	must(err, "new client "+name)
	m.cl = cl
	return m
}

// poll reads until want records arrived (then 600 ms more, to see no others come) or the deadline.
func (m *member) poll(want int, d time.Duration) []rec {
	got := []rec{}
	deadline := time.Now().Add(d)
	var extra time.Time
	for time.Now().Before(deadline) {
		if len(got) >= want && extra.IsZero() {
			extra = time.Now().Add(600 * time.Millisecond)
		}
		if !extra.IsZero() && time.Now().After(extra) {
			break
		}
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		fs := m.cl.PollFetches(ctx)
		cancel()
		for _, e := range fs.Errors() {
			if !errors.Is(e.Err, context.DeadlineExceeded) {
				die("%s: fetch error on %s[%d]: %v", m.name, e.Topic, e.Partition, e.Err)
			}
		}
		fs.EachRecord(func(r *kgo.Record) { got = append(got, toRec(r)) })
	}
	if len(got) < want {
		die("%s: %d of %d records within %s (owns %v; events %v)", m.name, len(got), want, d, m.owned(), m.log)
	}
	return got
}

func (m *member) commit() {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	must(m.cl.CommitUncommittedOffsets(ctx), m.name+" commit")
}

// waitFor polls (so group callbacks that need polling run) until cond holds.
func waitFor(what string, d time.Duration, cond func() bool, ms ...*member) {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			desc := ""
			for _, m := range ms {
				desc += fmt.Sprintf(" %s owns %v (events %v);", m.name, m.owned(), m.log)
			}
			die("timed out after %s waiting for %s:%s", d, what, desc)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func produceOnePerPartition(bootstrap, topic string, parts int, tag string) {
	cl, err := kgo.NewClient(append(baseOpts(bootstrap), kgo.RecordPartitioner(kgo.ManualPartitioner()))...)
	must(err, "producer")
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rs := []*kgo.Record{}
	for p := 0; p < parts; p++ {
		rs = append(rs, &kgo.Record{Topic: topic, Partition: int32(p), Value: []byte(fmt.Sprintf("%s-%d", tag, p))})
	}
	must(cl.ProduceSync(ctx, rs...).FirstErr(), "produce "+tag)
}

func groupType(bootstrap, grp string) map[string]string {
	cl, err := kgo.NewClient(baseOpts(bootstrap)...)
	must(err, "admin client")
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	lg, err := adm.ListGroups(ctx)
	must(err, "list groups")
	g, ok := lg[grp]
	if !ok {
		die("group %s not listed: %v", grp, lg.Groups())
	}
	return map[string]string{"type": g.GroupType, "protocol_type": g.ProtocolType, "state": g.State}
}

// describeGroup reports each member's client id and assigned partitions of topic: by
// ConsumerGroupDescribe (kadm.DescribeConsumerGroups) for a KIP-848 group, else DescribeGroups.
func describeGroup(bootstrap, grp, topic string, kip848 bool) map[string]any {
	cl, err := kgo.NewClient(baseOpts(bootstrap)...)
	must(err, "admin client")
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	members := map[string][]int32{}
	out := map[string]any{"members": members}
	if kip848 {
		dg, err := adm.DescribeConsumerGroups(ctx, grp)
		must(err, "describe consumer groups")
		g := dg[grp]
		must(g.Err, "describe consumer group")
		out["state"], out["assignor"], out["epoch_positive"] = g.State, g.AssignorName, g.Epoch > 0
		for _, m := range g.Members {
			members[m.ClientID] = sortedKeys(m.Assignment[topic])
			out[m.ClientID+"_target"] = sortedKeys(m.TargetAssignment[topic])
			out[m.ClientID+"_subscribed"] = m.SubscribedTopics
		}
		return out
	}
	dg, err := adm.DescribeGroups(ctx, grp)
	must(err, "describe groups")
	g := dg[grp]
	must(g.Err, "describe group")
	out["state"], out["protocol"] = g.State, g.Protocol
	for _, m := range g.Members {
		if c, ok := m.Assigned.AsConsumer(); ok {
			for _, t := range c.Topics {
				if t.Topic == topic {
					ps := append([]int32{}, t.Partitions...)
					sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
					members[m.ClientID] = ps
				}
			}
		}
	}
	return out
}

// group: the topic has 4 partitions with 5 records each. Members a and b join (a first); each
// must end with two partitions and read exactly their records, then commit. b leaves: a gets its
// partitions and reads only what is produced after b's commit (one record per partition), commits
// and closes. A new member c then reads only the next record of each partition.
func group(bootstrap, topic, grp string, kip848 bool) {
	const parts = 4
	report := map[string]any{}
	a := newMember("a", bootstrap, topic, grp, kip848)
	waitFor("a to own all 4 partitions", 30*time.Second, func() bool { return len(a.owned()) == parts }, a)
	b := newMember("b", bootstrap, topic, grp, kip848)
	waitFor("a and b to own 2 partitions each", 30*time.Second, func() bool {
		return len(a.owned()) == 2 && len(b.owned()) == 2
	}, a, b)
	report["list_groups"] = groupType(bootstrap, grp)
	report["describe"] = describeGroup(bootstrap, grp, topic, kip848)
	report["a_owned"], report["b_owned"] = a.owned(), b.owned()
	report["a_read"] = a.poll(10, 20*time.Second)
	report["b_read"] = b.poll(10, 20*time.Second)
	a.commit()
	b.commit()
	b.cl.Close() // leaves the group
	waitFor("a to own all 4 partitions after b left", 30*time.Second, func() bool { return len(a.owned()) == parts }, a)
	report["a_owned_after_leave"] = a.owned()
	produceOnePerPartition(bootstrap, topic, parts, "after-leave")
	report["a_read_after_leave"] = a.poll(parts, 20*time.Second)
	a.commit()
	report["a_events"], report["b_events"] = a.log, b.log
	a.cl.Close()
	produceOnePerPartition(bootstrap, topic, parts, "for-c")
	c := newMember("c", bootstrap, topic, grp, kip848)
	waitFor("c to own all 4 partitions", 30*time.Second, func() bool { return len(c.owned()) == parts }, c)
	report["c_read"] = c.poll(parts, 20*time.Second)
	c.commit()
	c.cl.Close()
	emit(report)
}

// ---- admin

func cfgMap(rc kadm.ResourceConfig) map[string]any {
	out := map[string]any{}
	for _, c := range rc.Configs {
		v := "<nil>"
		if c.Value != nil {
			v = *c.Value
		}
		out[c.Key] = map[string]any{"value": v, "source": c.Source.String()}
	}
	return out
}

func s(v string) *string { return &v }

// admin runs kadm's topic, config, offset and group calls against TOPIC and GROUP and reports
// what came back.
func admin(bootstrap, topic, grp string) {
	cl, err := kgo.NewClient(baseOpts(bootstrap)...)
	must(err, "client")
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rep := map[string]any{}

	bs, err := adm.ListBrokers(ctx)
	must(err, "list brokers")
	brokers := []string{}
	for _, b := range bs {
		brokers = append(brokers, fmt.Sprintf("%d@%s:%d", b.NodeID, b.Host, b.Port))
	}
	rep["brokers"] = brokers

	// Create with configs; again (exists); with a bad config; with zero partitions.
	cr, err := adm.CreateTopic(ctx, 2, 1, map[string]*string{"retention.ms": s("3600000"), "cleanup.policy": s("delete")}, topic)
	must(err, "create topic")
	rep["create"] = map[string]any{"err": errName(cr.Err), "partitions": cr.NumPartitions, "rf": cr.ReplicationFactor,
		"id_set": cr.ID != kadm.TopicID{}, "retention.ms": cfgValue(cr.Configs, "retention.ms")}
	cr2, err := adm.CreateTopic(ctx, 2, 1, nil, topic)
	soft(err, "create topic again")
	rep["create_again"] = errCode(cr2.Err)
	cr3, err := adm.CreateTopic(ctx, 1, 1, map[string]*string{"no.such.config": s("1")}, topic+"-badcfg")
	soft(err, "create bad config")
	rep["create_bad_config"] = errCode(cr3.Err)
	cr4, err := adm.CreateTopic(ctx, 0, 1, nil, topic+"-zero")
	soft(err, "create zero partitions")
	rep["create_zero_partitions"] = errCode(cr4.Err)

	// List / describe.
	td, err := adm.ListTopics(ctx, topic)
	must(err, "list topics")
	d := td[topic]
	rep["describe"] = map[string]any{"err": errName(d.Err), "partitions": len(d.Partitions), "internal": d.IsInternal,
		"id_matches": d.ID == cr.ID}
	all, err := adm.ListTopics(ctx)
	must(err, "list all topics")
	rep["listed"] = all.Has(topic)
	missing, err := adm.ListTopics(ctx, topic+"-missing")
	must(err, "list missing topic")
	rep["describe_missing"] = errCode(missing[topic+"-missing"].Err)

	// Create partitions: 2 -> 4; to fewer (refused).
	cp, err := adm.CreatePartitions(ctx, 2, topic)
	must(err, "create partitions")
	rep["create_partitions"] = errCode(cp[topic].Err)
	up, err := adm.UpdatePartitions(ctx, 3, topic)
	must(err, "update partitions to 3")
	rep["shrink_partitions"] = errCode(up[topic].Err)
	td, err = adm.ListTopics(ctx, topic)
	must(err, "list topics after create partitions")
	rep["partitions_after"] = len(td[topic].Partitions)

	// Configs: describe, incremental alter (set + delete), non-incremental alter, describe again.
	dc, err := adm.DescribeTopicConfigs(ctx, topic)
	must(err, "describe configs")
	rc, err := dc.On(topic, nil)
	must(err, "describe configs of topic")
	rep["configs"] = pick(cfgMap(rc), "retention.ms", "cleanup.policy", "segment.bytes", "min.insync.replicas")
	ar, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{
		{Op: kadm.SetConfig, Name: "segment.bytes", Value: s("1048576")},
		{Op: kadm.DeleteConfig, Name: "retention.ms"},
	}, topic)
	must(err, "incremental alter configs")
	rep["alter_incremental"] = errCode(ar[0].Err)
	ar, err = adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "no.such.config", Value: s("1")}}, topic)
	must(err, "incremental alter bad config")
	rep["alter_bad_config"] = errCode(ar[0].Err)
	dc, err = adm.DescribeTopicConfigs(ctx, topic)
	must(err, "describe configs after alter")
	rc, _ = dc.On(topic, nil)
	rep["configs_after_incremental"] = pick(cfgMap(rc), "retention.ms", "segment.bytes", "cleanup.policy")
	ar, err = adm.AlterTopicConfigsState(ctx, []kadm.AlterConfig{{Name: "max.message.bytes", Value: s("200000")}}, topic)
	must(err, "alter configs (state)")
	rep["alter_state"] = errCode(ar[0].Err)
	dc, err = adm.DescribeTopicConfigs(ctx, topic)
	must(err, "describe configs after alter state")
	rc, _ = dc.On(topic, nil)
	rep["configs_after_state"] = pick(cfgMap(rc), "max.message.bytes", "segment.bytes")
	dm, err := adm.DescribeTopicConfigs(ctx, topic+"-missing")
	must(err, "describe configs of missing topic")
	rep["describe_configs_missing"] = errCode(dm[0].Err)

	// Records with timestamps base+i*1000 on partition 0 (10) and partition 1 (3), then list offsets.
	base := (time.Now().Unix() - 3600) * 1000
	pcl, err := kgo.NewClient(append(baseOpts(bootstrap), kgo.RecordPartitioner(kgo.ManualPartitioner()))...)
	must(err, "producer")
	rs := []*kgo.Record{}
	for i := 0; i < 10; i++ {
		rs = append(rs, &kgo.Record{Topic: topic, Partition: 0, Value: []byte("t"), Timestamp: time.UnixMilli(base + int64(i)*1000)})
	}
	for i := 0; i < 3; i++ {
		rs = append(rs, &kgo.Record{Topic: topic, Partition: 1, Value: []byte("t"), Timestamp: time.UnixMilli(base + int64(i)*1000)})
	}
	must(pcl.ProduceSync(ctx, rs...).FirstErr(), "produce timed records")
	pcl.Close()
	offs := func(lo kadm.ListedOffsets, err error) map[string]any {
		what := "list offsets"
		must(err, what)
		must(lo.Error(), what+" (partition error)")
		out := map[string]any{}
		lo.Each(func(o kadm.ListedOffset) {
			out[strconv.Itoa(int(o.Partition))] = []int64{o.Offset, o.Timestamp}
		})
		return out
	}
	rep["start_offsets"] = offs(adm.ListStartOffsets(ctx, topic))
	rep["end_offsets"] = offs(adm.ListEndOffsets(ctx, topic))
	rep["offsets_after_base_plus_5500"] = offs(adm.ListOffsetsAfterMilli(ctx, base+5500, topic))
	rep["max_timestamp_offsets"] = func() any {
		lo, err := adm.ListMaxTimestampOffsets(ctx, topic)
		if err != nil {
			return err.Error()
		}
		out := map[string]any{}
		lo.Each(func(o kadm.ListedOffset) {
			out[strconv.Itoa(int(o.Partition))] = []any{o.Offset, o.Timestamp, errCode(o.Err)}
		})
		return out
	}()
	rep["base"] = base

	// A group: one live member consumes partition 0..3 and commits what it read (13 records).
	m := newMember("admin-member", bootstrap, topic, grp, false)
	waitFor("admin-member to own 4 partitions", 30*time.Second, func() bool { return len(m.owned()) == 4 }, m)
	m.poll(13, 20*time.Second)
	m.commit()
	// Then 2 more records on partition 0, not consumed: lag 2 there.
	pcl, err = kgo.NewClient(append(baseOpts(bootstrap), kgo.RecordPartitioner(kgo.ManualPartitioner()))...)
	must(err, "producer")
	must(pcl.ProduceSync(ctx, &kgo.Record{Topic: topic, Partition: 0, Value: []byte("l1")},
		&kgo.Record{Topic: topic, Partition: 0, Value: []byte("l2")}).FirstErr(), "produce lag records")
	pcl.Close()

	lg, err := adm.ListGroups(ctx)
	must(err, "list groups")
	if g, ok := lg[grp]; ok {
		rep["list_groups"] = map[string]any{"state": g.State, "protocol_type": g.ProtocolType, "type": g.GroupType}
	}
	dg, err := adm.DescribeGroups(ctx, grp)
	must(err, "describe groups")
	g := dg[grp]
	members := []map[string]any{}
	for _, mem := range g.Members {
		asg := map[string][]int32{}
		if c, ok := mem.Assigned.AsConsumer(); ok {
			for _, t := range c.Topics {
				asg[t.Topic] = t.Partitions
			}
		}
		members = append(members, map[string]any{"client_id": mem.ClientID, "host": mem.ClientHost, "assigned": asg[topic]})
	}
	rep["describe_group"] = map[string]any{"err": errName(g.Err), "state": g.State, "protocol_type": g.ProtocolType,
		"protocol": g.Protocol, "members": members, "coordinator": g.Coordinator.NodeID}
	fo, err := adm.FetchOffsets(ctx, grp)
	must(err, "fetch offsets")
	committed := map[string]int64{}
	fo.Each(func(o kadm.OffsetResponse) {
		if o.Topic == topic {
			committed[strconv.Itoa(int(o.Partition))] = o.At
		}
	})
	rep["committed"] = committed
	lag, err := adm.Lag(ctx, grp)
	must(err, "lag")
	l := lag[grp]
	lags := map[string]any{}
	for _, x := range l.Lag.Sorted() {
		if x.Topic == topic {
			lags[strconv.Itoa(int(x.Partition))] = map[string]any{"commit": x.Commit.At, "end": x.End.Offset, "lag": x.Lag,
				"member": x.Member != nil && x.Member.ClientID == "franzgo-admin-member", "err": errName(x.Err)}
		}
	}
	rep["lag"] = lags
	rep["lag_total"] = l.Lag.Total()
	dgm, err := adm.DescribeGroups(ctx, grp+"-missing")
	must(err, "describe missing group")
	rep["describe_missing_group"] = map[string]any{"err": errName(dgm[grp+"-missing"].Err), "state": dgm[grp+"-missing"].State}
	// Deleting a group with a live member is refused, and so is deleting the offsets of a topic it
	// subscribes to; after it leaves, both work.
	del := func() any {
		ds, err := adm.DeleteOffsets(ctx, grp, kadm.TopicsSet{topic: {1: {}}})
		if err != nil {
			return errCode(err)
		}
		e, _ := ds.Lookup(topic, 1)
		return errCode(e)
	}
	rep["delete_offsets_live"] = del()
	dr, err := adm.DeleteGroup(ctx, grp)
	rep["delete_live_group"] = errCode(firstNonNil(err, dr.Err))
	m.cl.Close()
	rep["delete_offsets_empty"] = del()
	fo, err = adm.FetchOffsets(ctx, grp)
	must(err, "fetch offsets after delete offsets")
	committed = map[string]int64{}
	fo.Each(func(o kadm.OffsetResponse) {
		if o.Topic == topic {
			committed[strconv.Itoa(int(o.Partition))] = o.At
		}
	})
	rep["committed_after_delete_offsets"] = committed
	dr, err = adm.DeleteGroup(ctx, grp)
	rep["delete_empty_group"] = errCode(firstNonNil(err, dr.Err))

	// Delete the topic; again (unknown).
	dt, err := adm.DeleteTopic(ctx, topic)
	soft(err, "delete topic")
	rep["delete"] = errCode(dt.Err)
	dt, err = adm.DeleteTopic(ctx, topic)
	soft(err, "delete topic again")
	rep["delete_again"] = errCode(dt.Err)
	time.Sleep(500 * time.Millisecond)
	all, err = adm.ListTopics(ctx)
	must(err, "list after delete")
	rep["listed_after_delete"] = all.Has(topic)
	emit(rep)
}

// soft fails on an error that is not a Kafka error code (single-item kadm calls also return the
// item's own error, which the report records).
func soft(err error, what string) {
	if err != nil && errCode(err) == -1 {
		die("%s: %v", what, err)
	}
}

func sortedKeys(s map[int32]struct{}) []int32 {
	ps := []int32{}
	for p := range s {
		ps = append(ps, p)
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
	return ps
}

func firstNonNil(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

func cfgValue(cs map[string]kadm.Config, k string) string {
	c, ok := cs[k]
	if !ok || c.Value == nil {
		return "<none>"
	}
	return *c.Value
}

func pick(m map[string]any, keys ...string) map[string]any {
	out := map[string]any{}
	for _, k := range keys {
		if v, ok := m[k]; ok {
			out[k] = v
		} else {
			out[k] = "<absent>"
		}
	}
	return out
}
