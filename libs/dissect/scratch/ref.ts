import { readFloatMatrix } from '@cm/core';
import { computeSimilarityOn, inlineExecutor, DissectPool } from '../src';
const dir='/work/shared/testvectors/clip-dissect/public_small/';
async function main(){
  const P=readFloatMatrix(dir+'clip_feats.npy','P'), Q=readFloatMatrix(dir+'target_feats.npy','Q');
  const meta=require(dir+'meta.json');
  const pool=new DissectPool({workers:2});
  for (const m of ['soft_wpmi','wpmi','cos','cos_cubed'] as const){
    const ref=readFloatMatrix(dir+m+'.npy','ref');
    for (const [name,ex] of [['inline',inlineExecutor],['pool',pool]] as const){
      const t=performance.now();
      const sim=await computeSimilarityOn(ex as any,m,P,Q);
      let maxAbs=0,maxRel=0,maxRef=0; for(let i=0;i<ref.data.length;i++){const d=Math.abs(sim.data[i]-ref.data[i]);maxAbs=Math.max(maxAbs,d);maxRef=Math.max(maxRef,Math.abs(ref.data[i]));maxRel=Math.max(maxRel,d/Math.max(1e-6,Math.abs(ref.data[i])));}
      let hits=0; for(let n=0;n<sim.rows;n++){let b=0;for(let j=1;j<sim.cols;j++)if(sim.data[n*sim.cols+j]>sim.data[n*sim.cols+b])b=j; if(b===meta.planted_preference[n])hits++;}
      let rhits=0; for(let n=0;n<ref.rows;n++){let b=0;for(let j=1;j<ref.cols;j++)if(ref.data[n*ref.cols+j]>ref.data[n*ref.cols+b])b=j; if(b===meta.planted_preference[n])rhits++;}
      console.log(m,name,'ms',(performance.now()-t).toFixed(1),'maxAbs',maxAbs.toExponential(2),'maxRel',maxRel.toExponential(2),'maxRef',maxRef.toFixed(3),'planted',hits,'/',sim.rows,'ref planted',rhits);
    }
  }
  const rr=await computeSimilarityOn(inlineExecutor,'rank_reorder',P,Q); const rr2=await computeSimilarityOn(pool,'rank_reorder',P,Q);
  let same=true; for(let i=0;i<rr.data.length;i++) if(rr.data[i]!==rr2.data[i]) same=false;
  let hits=0; for(let n=0;n<rr.rows;n++){let b=0;for(let j=1;j<rr.cols;j++)if(rr.data[n*rr.cols+j]>rr.data[n*rr.cols+b])b=j; if(b===meta.planted_preference[n])hits++;}
  console.log('rank_reorder same inline/pool',same,'planted',hits, rr.data.slice(0,5));
  await pool.close();
}
main().catch(e=>{console.error(e);process.exit(1)});
