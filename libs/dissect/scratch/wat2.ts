import { readFileSync } from 'node:fs';
async function main(){
  const wabt = await require('wabt')();
  const t0=performance.now();
  const mod = wabt.parseWat('k.wat', readFileSync(__dirname+'/../src/likelihood.wat','utf8'), {simd:true, threads:true});
  const bin = mod.toBinary({}).buffer; console.log('compile ms', performance.now()-t0, bin.length);
  const D=5000,S=20000,N=64,K=100; const stride=S;
  const bytesSm=D*stride*4; const scratch=1<<22; const pages=Math.ceil((bytesSm+scratch)/65536);
  const mem=new WebAssembly.Memory({initial:pages,maximum:65536,shared:true});
  const inst=await WebAssembly.instantiate(await WebAssembly.compile(bin),{env:{mem}});
  const lik=(inst.exports as any).likelihood as Function;
  const f32=new Float32Array(mem.buffer); const i32=new Int32Array(mem.buffer); const f64=new Float64Array(mem.buffer);
  const smBase=scratch; let s=1; for(let i=0;i<D*S;i++){s=(s*1103515245+12345)&0x7fffffff; f32[smBase/4+i]=(s/0x7fffffff)*1e-3;}
  const offs=0, cp=4096, out=cp+K*32;
  for(let r=0;r<K;r++){const p=0.998-r/K*0.028; const c=1-p+1e-7; for(let l=0;l<4;l++){f32[cp/4+r*8+l]=c; f32[cp/4+r*8+4+l]=p;}}
  const idx=new Int32Array(N*K);for(let i=0;i<N*K;i++)idx[i]=(i%K);
  for (const B of [128,256,512,1024,2048]){
    const t=performance.now();
    for(let j0=0;j0<S;j0+=B){ const groups=Math.min(B,S-j0)/8;
      for(let k=0;k<N;k++){ for(let r=0;r<K;r++) i32[offs/4+r]=idx[k*K+r]*stride*4;
        lik(smBase+j0*4, groups, offs, cp, 0, K, 12, out+65536, out);
      }}
    const dt=performance.now()-t; console.log('B',B,'ns/op',dt/(N*K*S)*1e6,'est full single s',dt/N*512/1000);
  }
  // check one value
  const k=3,j=77; let prod=1; for(let r=0;r<K;r++){const p=Math.fround(0.998-r/K*0.028); const c=Math.fround(1-p+1e-7); prod*=c+p*f32[smBase/4+idx[k*K+r]*stride+j];}
  for(let r=0;r<K;r++) i32[offs/4+r]=idx[k*K+r]*stride*4; lik(smBase,S/8,offs,cp,0,K,12,out+200000,out);
  console.log(Math.log(prod), Math.log(f64[out/8+j]));
}
main();
