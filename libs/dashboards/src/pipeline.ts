import * as dashboard from '@grafana/grafana-foundation-sdk/dashboard';
import * as prometheus from '@grafana/grafana-foundation-sdk/prometheus';
import * as timeseries from '@grafana/grafana-foundation-sdk/timeseries';
import { PROMETHEUS_DATASOURCE } from './datasource';

/**
 * The pipeline dashboard: the services' own Prometheus metrics (libs/metrics), scraped by the
 * compose Prometheus. Every expression names series that libs/metrics registers; the provisioning
 * test checks each name against the registries, so a renamed metric fails the build, not the
 * dashboard.
 */
export const PIPELINE_DASHBOARD_UID = 'cm-pipeline';

const RATE = '[$__rate_interval]';

const prom = (expr: string, legend: string, refId: string): prometheus.DataqueryBuilder =>
  new prometheus.DataqueryBuilder()
    .datasource(PROMETHEUS_DATASOURCE)
    .expr(expr)
    .legendFormat(legend)
    .range()
    .refId(refId);

/** p50 and p95 of a histogram, per service. */
const quantiles = (histogram: string): prometheus.DataqueryBuilder[] =>
  [
    ['0.5', 'p50', 'A'],
    ['0.95', 'p95', 'B'],
  ].map(([q, name, refId]) =>
    prom(
      `histogram_quantile(${q}, sum by (le, service) (rate(${histogram}_bucket${RATE})))`,
      `${name} {{service}}`,
      refId,
    ),
  );

const panel = (
  title: string,
  unit: string,
  targets: prometheus.DataqueryBuilder[],
  gridPos: { x: number; y: number; w: number; h: number },
  description?: string,
): timeseries.PanelBuilder => {
  const p = new timeseries.PanelBuilder()
    .title(title)
    .datasource(PROMETHEUS_DATASOURCE)
    .unit(unit)
    .min(0)
    .gridPos(gridPos);
  if (description) p.description(description);
  for (const t of targets) p.withTarget(t);
  return p;
};

const H = 8;
const at = (col: 0 | 1 | 2, row: number) => ({ x: col * 8, y: row * H, w: 8, h: H });

export function pipelineDashboard(): dashboard.DashboardBuilder {
  return new dashboard.DashboardBuilder('Concept-Monitor: pipeline')
    .uid(PIPELINE_DASHBOARD_UID)
    .description('The concept service and the recorder at work: throughput, latency, lag, memory.')
    .tags(['concept-monitor', 'pipeline'])
    .time({ from: 'now-1h', to: 'now' })
    .refresh('30s')
    .withPanel(
      panel(
        'Checkpoints received / acked / refused',
        'ops',
        [
          prom(
            `sum by (service) (rate(cm_service_checkpoints_received_total${RATE}))`,
            'received {{service}}',
            'A',
          ),
          prom(
            `sum by (service) (rate(cm_service_checkpoints_acked_total${RATE}))`,
            'acked {{service}}',
            'B',
          ),
          prom(
            `sum by (service, code) (rate(cm_service_refusals_total${RATE}))`,
            'refused {{code}} {{service}}',
            'C',
          ),
        ],
        at(0, 0),
        'Refusals are streams ended with an error status, by gRPC code.',
      ),
    )
    .withPanel(
      panel('Dissection seconds (per layer)', 's', quantiles('cm_service_dissection_seconds'), at(1, 0)),
    )
    .withPanel(
      panel(
        'Publish seconds (per checkpoint)',
        's',
        quantiles('cm_service_publish_seconds'),
        at(2, 0),
        'JetStream publish until every PubAck (concept service), or the store insert (cm serve).',
      ),
    )
    .withPanel(
      panel(
        'Activation bytes received',
        'Bps',
        [prom(`sum by (service) (rate(cm_service_activation_bytes_total${RATE}))`, '{{service}}', 'A')],
        at(0, 1),
      ),
    )
    .withPanel(
      panel(
        'Open trainer streams',
        'short',
        [prom('sum by (service) (cm_service_open_streams)', '{{service}}', 'A')],
        at(1, 1),
      ),
    )
    .withPanel(
      panel(
        'Recorder rows inserted by table',
        'rowsps',
        [prom(`sum by (table) (rate(cm_recorder_rows_inserted_total${RATE}))`, '{{table}}', 'A')],
        at(2, 1),
      ),
    )
    .withPanel(panel('Recorder insert seconds', 's', quantiles('cm_recorder_insert_seconds'), at(0, 2)))
    .withPanel(
      panel(
        'Consumer lag',
        'short',
        [
          prom('sum(cm_recorder_consumer_pending_messages)', 'pending (not yet delivered)', 'A'),
          prom('sum(cm_recorder_consumer_ack_pending_messages)', 'delivered, not acked', 'B'),
        ],
        at(1, 2),
      ),
    )
    .withPanel(
      panel(
        'Redeliveries and failures',
        'ops',
        [
          prom(`sum(rate(cm_recorder_redeliveries_total${RATE}))`, 'redeliveries', 'A'),
          prom(`sum(rate(cm_recorder_failed_inserts_total${RATE}))`, 'failed inserts', 'B'),
          prom(`sum(rate(cm_recorder_messages_terminated_total${RATE}))`, 'terminated (malformed)', 'C'),
        ],
        at(2, 2),
      ),
    )
    .withPanel(
      panel(
        'Process memory',
        'bytes',
        [
          prom('sum by (service) (cm_process_resident_memory_bytes)', 'resident {{service}}', 'A'),
          prom('sum by (service) (cm_nodejs_heap_size_used_bytes)', 'heap used {{service}}', 'B'),
        ],
        { x: 0, y: 3 * H, w: 24, h: H },
      ),
    );
}
