import { DashboardBuilder } from '@grafana/grafana-foundation-sdk/dashboard';
const d = new DashboardBuilder('x').uid('y').build();
console.log(JSON.stringify(d).slice(0,200));
