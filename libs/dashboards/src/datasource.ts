import type * as cog from '@grafana/grafana-foundation-sdk/cog';
import type * as common from '@grafana/grafana-foundation-sdk/common';

/** The one ClickHouse data source every dashboard and alert rule points at (provisioned with this uid). */
export const DATASOURCE_UID = 'cm-clickhouse';
export const DATASOURCE_TYPE = 'grafana-clickhouse-datasource';
export const DATASOURCE: common.DataSourceRef = { type: DATASOURCE_TYPE, uid: DATASOURCE_UID };

/**
 * The query model of grafana-clickhouse-datasource v4 in SQL-editor mode (its src/types/sql.ts:
 * CHSqlQuery). The SDK has no ClickHouse module, so the model is typed here. `format` is the
 * plugin's Format enum: 0 time series, 1 table.
 */
export type ClickHouseQueryType = 'timeseries' | 'table';

export interface ClickHouseSqlQuery extends cog.Dataquery {
  refId: string;
  datasource: common.DataSourceRef;
  editorType: 'sql';
  queryType: ClickHouseQueryType;
  format: 0 | 1;
  rawSql: string;
  hide?: boolean;
}

/** A cog builder so panels take it like any SDK query (`.withTarget(...)`). */
export class ClickHouseQueryBuilder implements cog.Builder<cog.Dataquery> {
  private readonly query: ClickHouseSqlQuery;

  constructor(rawSql: string, queryType: ClickHouseQueryType = 'table', refId = 'A') {
    this.query = {
      refId,
      datasource: DATASOURCE,
      editorType: 'sql',
      queryType,
      format: queryType === 'timeseries' ? 0 : 1,
      rawSql: rawSql.trim(),
      _implementsDataqueryVariant() {},
    };
  }

  build(): ClickHouseSqlQuery {
    return this.query;
  }
}

/** Shorthands used by the dashboards. */
export const sqlTable = (sql: string, refId = 'A'): ClickHouseQueryBuilder =>
  new ClickHouseQueryBuilder(sql, 'table', refId);
export const sqlTimeSeries = (sql: string, refId = 'A'): ClickHouseQueryBuilder =>
  new ClickHouseQueryBuilder(sql, 'timeseries', refId);

/**
 * Grafana's data source provisioning file (provisioning/datasources/*.yaml) for the ClickHouse
 * plugin. `$VAR` values are read by Grafana from its environment at start (docker-compose passes
 * them from deploy/.env), so no secret is committed.
 */
export interface ClickHouseDatasourceJsonData {
  host: string;
  port: number;
  protocol: 'native' | 'http';
  secure: boolean;
  username: string;
  defaultDatabase: string;
  dialTimeout?: string;
  queryTimeout?: string;
}

export interface DatasourceProvisioning {
  apiVersion: 1;
  datasources: {
    name: string;
    type: typeof DATASOURCE_TYPE;
    uid: string;
    access: 'proxy';
    isDefault: boolean;
    editable: boolean;
    jsonData: ClickHouseDatasourceJsonData;
    secureJsonData: { password: string };
  }[];
}

export function datasourceProvisioning(): DatasourceProvisioning {
  return {
    apiVersion: 1,
    datasources: [
      {
        name: 'Concept-Monitor ClickHouse',
        type: DATASOURCE_TYPE,
        uid: DATASOURCE_UID,
        access: 'proxy',
        isDefault: true,
        editable: false,
        jsonData: {
          host: 'clickhouse',
          port: 9000,
          protocol: 'native',
          secure: false,
          username: 'grafana',
          defaultDatabase: '${CM_CLICKHOUSE_DATABASE}',
          dialTimeout: '10',
          queryTimeout: '60',
        },
        secureJsonData: { password: '${CM_GRAFANA_CH_PASSWORD}' },
      },
    ],
  };
}

/** Dashboard provider: Grafana loads every JSON file of the mounted folder into one folder. */
export interface DashboardProviderProvisioning {
  apiVersion: 1;
  providers: {
    name: string;
    orgId: number;
    folder: string;
    folderUid: string;
    type: 'file';
    disableDeletion: boolean;
    allowUiUpdates: boolean;
    updateIntervalSeconds: number;
    options: { path: string; foldersFromFilesStructure: boolean };
  }[];
}

export const DASHBOARD_FOLDER = 'Concept-Monitor';
export const DASHBOARD_FOLDER_UID = 'concept-monitor';
/** Where docker-compose mounts deploy/grafana/dashboards inside the Grafana container. */
export const DASHBOARDS_CONTAINER_PATH = '/var/lib/grafana/dashboards';

export function dashboardProviderProvisioning(): DashboardProviderProvisioning {
  return {
    apiVersion: 1,
    providers: [
      {
        name: 'concept-monitor',
        orgId: 1,
        folder: DASHBOARD_FOLDER,
        folderUid: DASHBOARD_FOLDER_UID,
        type: 'file',
        disableDeletion: true,
        allowUiUpdates: false,
        updateIntervalSeconds: 60,
        options: { path: DASHBOARDS_CONTAINER_PATH, foldersFromFilesStructure: false },
      },
    ],
  };
}

/**
 * The Prometheus that scrapes the services' /metrics (deploy/prometheus/prometheus.yml), for the
 * pipeline dashboard. Its own uid so the ClickHouse dashboards stay on the default data source.
 */
export const PROMETHEUS_DATASOURCE_UID = 'cm-prometheus';
export const PROMETHEUS_DATASOURCE_TYPE = 'prometheus';
export const PROMETHEUS_DATASOURCE: common.DataSourceRef = {
  type: PROMETHEUS_DATASOURCE_TYPE,
  uid: PROMETHEUS_DATASOURCE_UID,
};

export interface PrometheusDatasourceProvisioning {
  apiVersion: 1;
  datasources: {
    name: string;
    type: typeof PROMETHEUS_DATASOURCE_TYPE;
    uid: string;
    access: 'proxy';
    url: string;
    isDefault: boolean;
    editable: boolean;
    jsonData: { httpMethod: 'POST'; timeInterval: string };
  }[];
}

/** `prometheus:9090` is the compose service; timeInterval is its scrape interval (rate() windows). */
export function prometheusDatasourceProvisioning(): PrometheusDatasourceProvisioning {
  return {
    apiVersion: 1,
    datasources: [
      {
        name: 'Concept-Monitor Prometheus',
        type: PROMETHEUS_DATASOURCE_TYPE,
        uid: PROMETHEUS_DATASOURCE_UID,
        access: 'proxy',
        url: 'http://prometheus:9090',
        isDefault: false,
        editable: false,
        jsonData: { httpMethod: 'POST', timeInterval: '15s' },
      },
    ],
  };
}
